// The story viewer shared by every page: CoT tables per image, narrative structure,
// grounded story with coloured tags, boxes and tooltips on hover (or a tap), character cards,
// diagnostics, raw output and export.
//
// It is fed either a whole telling (renderTelling) or the streaming parser's events one
// at a time (applyEvent). Each event touches a constant amount of the page (a table
// row appended, a span opened, a text node appended), so the work per chunk stays flat
// however long the output grows. Every text from the model is set as textContent.
//
// The keyboard does what the pointer does: a focused tag, table id or character card
// draws its boxes as hovering does, Escape closes the tooltip, and the tab bars follow
// the WAI-ARIA tabs pattern (one tab in the Tab order; Left/Right, Home/End move along).

import { api, ApiError } from "./api.js";
import { h, append, clear, replace, download } from "./dom.js";

/** Entity kinds by id prefix: [name, css class]. Colours are in app.css (.k-char …). */
export const KINDS = {
  char: ["character", "k-char"],
  obj: ["object", "k-obj"],
  bg: ["background", "k-bg"],
  lm: ["landmark", "k-lm"],
};
/** The story tags and what the original interface called them. */
export const TAGS = {
  gdo: "Character or object reference",
  gda: "Character action",
  gdl: "Location or background",
};

export function idKind(id) {
  const m = /^(char|obj|bg|lm)\d+$/.exec(id);
  return m ? m[1] : null;
}

function kindClass(id) {
  const kind = idKind(id);
  return kind ? KINDS[kind][1] : "k-other";
}

function pct(value) {
  return `${(value * 100).toFixed(4)}%`;
}

function boxText(box) {
  return Array.isArray(box) ? box.join(",") : "—";
}

function short(text, n = 40) {
  text = String(text || "");
  return text.length <= n ? text : `${text.slice(0, n - 1)}…`;
}

/** A segment of a final telling as a list of plain strings and spans, in order. */
export function segmentParts(segment) {
  if (Array.isArray(segment.parts)) {
    // the parser's own order: plain runs as strings, spans as they are
    return segment.parts.map((part) => (part.kind ? part : String(part.text || "")));
  }
  const text = segment.text || "";
  const parts = [];
  let pos = 0;
  for (const span of segment.spans || []) {
    const ids = span.ids && span.ids.length ? ` ${span.ids.join(" ")}` : "";
    const rendered = `<${span.kind}${ids}>${span.text}</${span.kind}>`;
    const at = text.indexOf(rendered, pos);
    if (at < 0) {
      parts.push(span); // cannot place it in the text: keep the span, lose nothing of it
      continue;
    }
    if (at > pos) parts.push(text.slice(pos, at));
    parts.push(span);
    pos = at + rendered.length;
  }
  if (pos < text.length) parts.push(text.slice(pos));
  return parts;
}

// -- the tooltip (one for the whole page) -------------------------------------------------------
//
// With a mouse on a wide screen it follows the pointer. On a narrow screen, or opened by a tap,
// it is pinned instead: the text lies under its frame there, so a tooltip at the finger would
// cover the very boxes it names. A pinned tooltip goes where the frame stays in sight (below or
// above it; else beside, below or above its boxes), inside the window, and a second tap (the
// viewer's) or a tap anywhere else closes it with its boxes.

const NARROW = "(max-width: 720px)"; // app.css's small screens
const EDGE = 8; // a pinned tooltip's distance from the window's edges
const GAP = 8; // and from the frame or the boxes it keeps clear of

function clamp(value, low, high) {
  return Math.max(low, Math.min(value, high));
}

const tooltip = {
  el: null,
  pinned: null, // {frame, anchor, close, touch} while pinned, else null
  node() {
    if (!this.el) {
      this.el = h("div", { class: "tooltip", role: "tooltip", "aria-hidden": "true" });
      document.body.appendChild(this.el);
      // Escape closes it, wherever the focus or the pointer is (WAI-ARIA tooltip)
      document.addEventListener("keydown", (ev) => {
        if (ev.key === "Escape" && this.el.classList.contains("shown")) this.hide();
      });
      // a tap elsewhere closes a pinned one; captured, so before the tapped element opens its own
      document.addEventListener(
        "pointerdown",
        (ev) => {
          const pin = this.pinned;
          if (pin && !pin.anchor.contains(ev.target) && !this.el.contains(ev.target)) pin.close();
        },
        true,
      );
      // a tap on it too (it takes taps only when it scrolls: a swipe there scrolls it, and is no click)
      this.el.addEventListener("click", () => this.pinned && this.pinned.close());
      // the page or a column scrolled, the window turned: placed again, clear of the frame where it now is
      const again = (ev) => {
        if (this.pinned && ev.target !== this.el) this.place();
      };
      window.addEventListener("scroll", again, { capture: true, passive: true });
      window.addEventListener("resize", again);
    }
    return this.el;
  },
  show(children, x, y) {
    const el = this.node();
    this.unpin();
    replace(el, children);
    el.classList.add("shown");
    this.move(x, y);
  },
  /** Shown clear of `frame` and its boxes, describing `anchor`; `close()` ends it (and its boxes). */
  pin(children, { frame, anchor, close, touch = false }) {
    const el = this.node();
    this.unpin();
    replace(el, children);
    this.pinned = { frame, anchor, close, touch };
    el.classList.add("shown", "pinned");
    this.place();
  },
  /** Whether it is pinned describing `anchor`. */
  pinnedTo(anchor) {
    return Boolean(this.pinned && this.pinned.anchor === anchor);
  },
  move(x, y) {
    const el = this.node();
    if (!el.classList.contains("shown") || this.pinned) return;
    // position: fixed, so client coordinates; kept inside the window
    const pad = 14;
    const w = el.offsetWidth;
    const hgt = el.offsetHeight;
    let left = x + pad;
    let top = y + pad;
    if (left + w > window.innerWidth - 8) left = Math.max(8, x - w - pad);
    if (top + hgt > window.innerHeight - 8) top = Math.max(8, y - hgt - pad);
    el.style.left = `${left}px`;
    el.style.top = `${top}px`;
  },
  /** A pinned tooltip's place: the first free band of the window that holds it whole. */
  place() {
    const el = this.el;
    const { frame, touch } = this.pinned;
    el.classList.remove("clipped", "touch");
    el.style.maxHeight = "";
    el.style.left = "0px"; // measured at the left edge, so the window's width bounds it, not its last place
    el.style.top = "0px";
    const w = el.offsetWidth;
    const hgt = el.offsetHeight;
    const right = document.documentElement.clientWidth - EDGE;
    const bottom = window.innerHeight - EDGE;
    const f = frame.getBoundingClientRect();
    // the boxes with their labels, as much of them as the frame shows (it clips them)
    let k = null;
    for (const node of frame.querySelectorAll(".overlay .box, .overlay .box-label")) {
      const r = node.getBoundingClientRect();
      k = k
        ? { left: Math.min(k.left, r.left), top: Math.min(k.top, r.top), right: Math.max(k.right, r.right), bottom: Math.max(k.bottom, r.bottom) }
        : { left: r.left, top: r.top, right: r.right, bottom: r.bottom };
    }
    if (k) k = { left: Math.max(k.left, f.left), top: Math.max(k.top, f.top), right: Math.min(k.right, f.right), bottom: Math.min(k.bottom, f.bottom) };
    // free bands [left, top, right, bottom], the best first; `at`: the edge it keeps to
    const bands = [
      { box: [EDGE, Math.max(EDGE, f.bottom + GAP), right, bottom], at: "top" }, // below the frame
      { box: [EDGE, EDGE, right, Math.min(bottom, f.top - GAP)], at: "bottom" }, // above it
    ];
    if (k) {
      bands.push(
        { box: [Math.max(EDGE, k.right + GAP), EDGE, right, bottom], at: "side" }, // right of the boxes
        { box: [EDGE, EDGE, Math.min(right, k.left - GAP), bottom], at: "side" }, // left of them
        { box: [EDGE, Math.max(EDGE, k.bottom + GAP), right, bottom], at: "top" }, // below them, on the frame
        { box: [EDGE, EDGE, right, Math.min(bottom, k.top - GAP)], at: "bottom" }, // above them
      );
    }
    const fits = bands.filter(({ box: [l, , r] }) => r - l >= w);
    const wide = fits.length ? fits : bands;
    let band = wide.find(({ box: [, t, , b] }) => b - t >= hgt);
    let height = hgt;
    if (!band) {
      // none holds it whole: the tallest, where it scrolls (under a finger: it takes touches then)
      band = wide.reduce((best, one) => (one.box[3] - one.box[1] > best.box[3] - best.box[1] ? one : best));
      height = Math.max(48, band.box[3] - band.box[1]);
      el.style.maxHeight = `${height}px`;
      el.classList.add("clipped");
      el.classList.toggle("touch", touch);
    }
    const [l, t, r, b] = band.box;
    const near = k || f; // centred on the boxes (else the frame), as far as the band allows
    const left = clamp((near.left + near.right - w) / 2, l, r - w);
    const top = band.at === "top" ? t : band.at === "bottom" ? b - height : clamp(near.top, t, b - height);
    el.style.left = `${Math.max(EDGE, left)}px`;
    el.style.top = `${Math.max(EDGE, top)}px`;
  },
  unpin() {
    this.pinned = null;
    if (this.el) {
      this.el.classList.remove("pinned", "clipped", "touch");
      this.el.style.maxHeight = "";
    }
  },
  hide() {
    this.unpin();
    if (this.el) this.el.classList.remove("shown");
  },
};

/** The tab bar's keys (WAI-ARIA tabs, activation follows focus): Left/Right (wrapping), Home, End. */
function tabKeys(tablist, activate) {
  tablist.addEventListener("keydown", (ev) => {
    const tabs = Array.from(tablist.querySelectorAll('[role="tab"]')).filter((t) => !t.hidden);
    const at = tabs.indexOf(ev.target.closest('[role="tab"]'));
    if (at < 0 || ev.altKey || ev.ctrlKey || ev.metaKey) return;
    const to = { ArrowRight: (at + 1) % tabs.length, ArrowLeft: (at - 1 + tabs.length) % tabs.length, Home: 0, End: tabs.length - 1 }[ev.key];
    if (to === undefined) return;
    ev.preventDefault();
    activate(tabs[to]);
    tabs[to].focus();
  });
}

/** One tab of a tab bar in the Tab order: the selected one (else the first). */
function rovingIndex(tablist) {
  const tabs = Array.from(tablist.querySelectorAll('[role="tab"]'));
  const chosen = tabs.find((t) => t.getAttribute("aria-selected") === "true") || tabs[0];
  for (const tab of tabs) tab.tabIndex = tab === chosen ? 0 : -1;
}

let viewerCount = 0; // ids of tabs and panels, unique on the page

/**
 * A frame has its picture's shape exactly, so the boxes (percentages of the frame) lie on
 * the picture. app.css bounds its width by the ratio: a tall picture is drawn narrower
 * (never taller than --frame-cap), a wide one wider than its column, which scrolls
 * (never flatter than --frame-floor).
 */
function shape(frame, width, height) {
  frame.style.aspectRatio = `${width} / ${height}`;
  frame.style.setProperty("--ratio", String(width / height));
}

function anchorPoint(node) {
  const r = node.getBoundingClientRect();
  return [r.left, r.bottom];
}

// -- the viewer ---------------------------------------------------------------------------------

export class Viewer {
  /**
   * options.title: shown in the toolbar and used for the exported file;
   * options.exportSource(): the body of POST /api/export (without text and title), or null;
   * options.label: a short label above the toolbar (a run's name in a comparison).
   */
  constructor(options = {}) {
    this.options = options;
    this.title = options.title || "Story";
    this.images = [];
    this.raw = "";
    this.follow = true; // focus new tabs as the stream opens them, until the user picks one
    this.tap = null; // a finger's tap under way: {target, open} (watchTaps)
    this.imageCache = new Map();
    this.uid = `viewer${++viewerCount}`;
    this.build();
    this.reset();
  }

  // -- structure --------------------------------------------------------------------------------
  build() {
    this.titleEl = h("h2", { class: "viewer-title", text: this.title });
    this.statusEl = h("span", { class: "viewer-status" });
    this.exportBtn = h("button", {
      class: "btn small",
      type: "button",
      text: "Export HTML",
      title: "Download this story as one self-contained HTML file",
      disabled: true,
      onclick: () => this.export(),
    });
    this.messageEl = h("div", { class: "viewer-message", role: "status" });
    const toolbar = h("div", { class: "viewer-toolbar" }, this.titleEl, this.statusEl, h("span", { class: "spacer" }), this.exportBtn);

    this.tabs = {};
    this.panes = {};
    const tabBar = h("div", { class: "tabs", role: "tablist" });
    const panes = h("div", { class: "tab-panes" });
    for (const [key, label] of [
      ["story", "Story"],
      ["tables", "Tables"],
      ["diagnostics", "Diagnostics"],
      ["raw", "Raw output"],
    ]) {
      const tab = h("button", {
        class: "tab",
        type: "button",
        role: "tab",
        id: `${this.uid}-tab-${key}`,
        "aria-controls": `${this.uid}-pane-${key}`,
        dataset: { tab: key },
        text: label,
        onclick: () => {
          this.follow = false;
          this.showTab(key);
        },
      });
      this.tabs[key] = tab;
      tabBar.appendChild(tab);
      const pane = h("div", { class: `tab-pane pane-${key}`, role: "tabpanel", id: `${this.uid}-pane-${key}`, "aria-labelledby": tab.id, dataset: { pane: key } });
      this.panes[key] = pane;
      panes.appendChild(pane);
    }

    // story: frames on the left, legend and characters on the right
    this.storyCol = h("div", { class: "story-col" });
    this.charList = h("div", { class: "char-list" });
    this.charEmpty = h("p", { class: "empty", text: "No characters yet." });
    const legend = h(
      "div",
      { class: "legend card" },
      h("h3", { text: "Tag legend" }),
      h(
        "ul",
        { class: "legend-list" },
        Object.entries(TAGS).map(([kind, label]) =>
          h("li", {}, h("span", { class: `tag ${kind}`, text: `<${kind}>` }), " ", label),
        ),
      ),
      h(
        "ul",
        { class: "legend-list boxes" },
        Object.entries(KINDS).map(([, [name, cls]]) => h("li", {}, h("i", { class: `swatch ${cls}` }), `${name} box`)),
      ),
    );
    const side = h(
      "aside",
      { class: "story-side" },
      legend,
      h("div", { class: "card characters" }, h("h3", { text: "Characters" }), this.charEmpty, this.charList),
    );
    append(this.panes.story, [h("div", { class: "story-layout" }, this.storyCol, side)]);

    // tables: a sub-tab per image, then the narrative structure
    this.subTabs = h("div", { class: "subtabs", role: "tablist" });
    this.subPanes = h("div", { class: "subpanes" });
    append(this.panes.tables, [this.subTabs, this.subPanes]);

    this.root = h("section", { class: "viewer" }, labelOf(this.options.label), toolbar, this.messageEl, tabBar, panes);

    // hover and taps: delegated, so spans and rows added while streaming need no listeners. A mouse
    // hovers; a finger or a pen taps (watchTaps). Pointer events, not mouse ones: the mouseover a
    // phone makes up for a tap would open the tooltip at the finger, over the frame.
    this.storyCol.addEventListener("pointerover", (ev) => ev.pointerType === "mouse" && this.onStoryOver(ev));
    this.storyCol.addEventListener("pointerout", (ev) => ev.pointerType === "mouse" && this.onStoryOut(ev));
    this.storyCol.addEventListener("pointermove", (ev) => ev.pointerType === "mouse" && tooltip.move(ev.clientX, ev.clientY));
    this.storyCol.addEventListener("focusin", (ev) => this.onStoryOver(ev, "focus"));
    this.storyCol.addEventListener("focusout", (ev) => this.onStoryOut(ev));
    this.watchTaps(this.storyCol, ".tag", (ev) => this.onStoryOver(ev, "tap"), () => this.leaveTag());
    tabKeys(tabBar, (tab) => {
      this.follow = false;
      this.showTab(tab.dataset.tab);
    });
    tabKeys(this.subTabs, (tab) => {
      this.follow = false;
      this.showSubTab(tab.dataset.sub);
    });
    this.subPanes.addEventListener("pointerover", (ev) => ev.pointerType === "mouse" && this.onTableOver(ev));
    this.subPanes.addEventListener("pointerout", (ev) => ev.pointerType === "mouse" && this.onTableOut(ev));
    this.subPanes.addEventListener("pointermove", (ev) => ev.pointerType === "mouse" && tooltip.move(ev.clientX, ev.clientY));
    this.subPanes.addEventListener("focusin", (ev) => this.onTableOver(ev, "focus"));
    this.subPanes.addEventListener("focusout", (ev) => this.onTableOut(ev));
    this.watchTaps(this.subPanes, ".id-cell", (ev) => this.onTableOver(ev, "tap"), () => this.leaveCell());
    this.charList.addEventListener("mouseover", (ev) => this.onCharOver(ev));
    this.charList.addEventListener("mouseout", (ev) => this.onCharOut(ev));
    this.charList.addEventListener("focusin", (ev) => this.onCharOver(ev));
    this.charList.addEventListener("focusout", (ev) => this.onCharOut(ev));
    this.panes.diagnostics.addEventListener("click", (ev) => {
      const link = ev.target.closest("[data-goto-line]");
      if (link) this.gotoLine(Number(link.dataset.gotoLine));
    });
  }

  /** Clear everything drawn (keeps the images). */
  reset() {
    tooltip.hide();
    this.hoverTag = null;
    this.hoverCell = null;
    this.hoverChar = null;
    this.entities = new Map(); // image number -> Map(id -> {table, row})
    this.appear = new Map(); // id -> [image numbers]
    this.imageTabs = new Map(); // image number -> {tab, pane, frame, bodies, counts}
    this.narrative = null;
    this.charCards = new Map();
    this.segment = null; // the story card being written
    this.span = null; // the span being written
    this.hasCot = false;
    this.hasStory = false;
    this.telling = null;
    clear(this.subTabs);
    clear(this.subPanes);
    clear(this.storyCol);
    clear(this.charList);
    this.charEmpty.hidden = false;
    this.charEmpty.textContent = "No characters yet.";
    this.storyEmpty = h("p", { class: "empty", text: "No story yet." });
    this.storyCol.appendChild(this.storyEmpty);
    this.tablesEmpty = h("p", { class: "empty", text: "No chain-of-thought yet." });
    this.subPanes.appendChild(this.tablesEmpty);
    replace(this.panes.diagnostics, h("p", { class: "empty", text: "The parser's findings appear when the output is complete." }));
    replace(this.panes.raw, h("p", { class: "empty", text: "No output yet." }));
    this.tabs.diagnostics.textContent = "Diagnostics";
    this.tabs.diagnostics.className = "tab";
    this.statusEl.textContent = "";
    this.statusEl.className = "viewer-status";
    this.setMessage("");
    this.exportBtn.disabled = true;
    if (!this.current) this.showTab("story");
  }

  /** The frames: [{url, width, height, name}] in story order (image k is images[k-1]). */
  setImages(images) {
    this.images = (images || []).map((img) => ({ ...img }));
    this.imageCache = new Map();
  }

  setTitle(title) {
    this.title = title || "Story";
    this.titleEl.textContent = this.title;
  }

  setMessage(text, kind = "info") {
    this.messageEl.textContent = text || "";
    this.messageEl.className = `viewer-message ${text ? kind : ""}`;
  }

  showTab(key) {
    this.current = key;
    for (const [name, tab] of Object.entries(this.tabs)) {
      const on = name === key;
      tab.classList.toggle("active", on);
      tab.setAttribute("aria-selected", on ? "true" : "false");
      tab.tabIndex = on ? 0 : -1;
      this.panes[name].hidden = !on;
    }
    tooltip.hide();
  }

  showSubTab(key) {
    for (const tab of this.subTabs.children) {
      const on = tab.dataset.sub === String(key);
      tab.classList.toggle("active", on);
      tab.setAttribute("aria-selected", on ? "true" : "false");
    }
    rovingIndex(this.subTabs);
    for (const pane of this.subPanes.children) {
      if (pane.dataset.sub !== undefined) pane.hidden = pane.dataset.sub !== String(key);
    }
    this.currentSub = String(key);
  }

  // -- frames and boxes ------------------------------------------------------------------------
  imageInfo(n) {
    return this.images[n - 1] || null;
  }

  /** A frame: the image (or a placeholder) with an overlay layer for boxes. */
  makeFrame(n, extraClass = "") {
    const info = this.imageInfo(n);
    const frame = h("div", { class: `frame ${extraClass}`.trim(), dataset: { image: String(n) } });
    const overlay = h("div", { class: "overlay" });
    if (info && info.url) {
      const img = h("img", { src: info.url, alt: `Image ${n}`, draggable: "false", loading: "lazy" });
      if (info.width && info.height) {
        shape(frame, info.width, info.height);
        frame.dataset.width = String(info.width);
        frame.dataset.height = String(info.height);
      } else {
        shape(frame, 4, 3);
        img.addEventListener("load", () => {
          info.width = img.naturalWidth;
          info.height = img.naturalHeight;
          shape(frame, info.width, info.height);
        });
      }
      img.addEventListener("error", () => {
        frame.classList.add("missing");
        img.replaceWith(h("div", { class: "placeholder", text: `Image ${n} could not be loaded.` }));
      });
      append(frame, [img, overlay]);
    } else {
      frame.classList.add("missing");
      shape(frame, 4, 3);
      append(frame, [h("div", { class: "placeholder", text: `Image ${n}: no image given, so boxes cannot be drawn.` }), overlay]);
    }
    return frame;
  }

  /** Draw the boxes of `ids` (as the CoT of image n lists them) on a frame; returns how many. */
  drawBoxes(frame, n, ids, { labels = true } = {}) {
    const overlay = frame.querySelector(".overlay");
    clear(overlay);
    const info = this.imageInfo(n);
    const width = info && info.width;
    const height = info && info.height;
    if (!width || !height) return 0;
    const table = this.entities.get(n);
    const boxes = [];
    for (const id of ids) {
      const entry = table && table.get(id);
      if (!entry || !Array.isArray(entry.row.box)) continue;
      let [x1, y1, x2, y2] = entry.row.box.map(Number);
      const original = [x1, y1, x2, y2];
      x1 = Math.max(0, Math.min(width, x1));
      x2 = Math.max(0, Math.min(width, x2));
      y1 = Math.max(0, Math.min(height, y1));
      y2 = Math.max(0, Math.min(height, y2));
      if (!(x2 > x1 && y2 > y1)) continue;
      const clipped = original.join() !== [x1, y1, x2, y2].join();
      const label = `${id} ${entry.row.name || short(entry.row.description, 28)}`.trim();
      const inside = y1 / height < 0.07 ? " label-inside" : "";
      const box = h(
        "div",
        { class: `box ${kindClass(id)}${clipped ? " clipped" : ""}${inside}`, dataset: { id, box: original.join(",") } },
        labels ? h("span", { class: "box-label", text: label }) : null,
      );
      box.style.left = pct(x1 / width);
      box.style.top = pct(y1 / height);
      box.style.width = pct((x2 - x1) / width);
      box.style.height = pct((y2 - y1) / height);
      boxes.push([(x2 - x1) * (y2 - y1), box]);
    }
    boxes.sort((a, b) => b[0] - a[0]); // large first, small ones stay on top
    for (const [, box] of boxes) overlay.appendChild(box);
    return boxes.length;
  }

  /** Back to the frame's resting state: no boxes, or all of them when "show all boxes" is on. */
  restFrame(frame) {
    const n = Number(frame.dataset.image);
    if (frame.dataset.all === "1") this.drawBoxes(frame, n, Array.from((this.entities.get(n) || new Map()).keys()));
    else clear(frame.querySelector(".overlay"));
  }

  loadImage(n) {
    if (this.imageCache.has(n)) return this.imageCache.get(n);
    const info = this.imageInfo(n);
    if (!info || !info.url) return null;
    const img = h("img", { src: info.url, alt: "" }); // decoded off-screen for the crops
    this.imageCache.set(n, img);
    return img;
  }

  /** Paint a character's crop (box scaled to fit, centred) on a canvas. */
  drawCrop(canvas, n, box) {
    const img = this.loadImage(n);
    if (!img || !Array.isArray(box)) return;
    const paint = () => {
      const info = this.imageInfo(n);
      const width = (info && info.width) || img.naturalWidth;
      const height = (info && info.height) || img.naturalHeight;
      if (!width || !height || !img.naturalWidth) return;
      const sx = img.naturalWidth / width;
      const sy = img.naturalHeight / height;
      let [x1, y1, x2, y2] = box.map(Number);
      x1 = Math.max(0, Math.min(width, x1));
      x2 = Math.max(0, Math.min(width, x2));
      y1 = Math.max(0, Math.min(height, y1));
      y2 = Math.max(0, Math.min(height, y2));
      if (!(x2 > x1 && y2 > y1)) return;
      const size = 88;
      const dpr = Math.min(3, window.devicePixelRatio || 1);
      canvas.width = size * dpr;
      canvas.height = size * dpr;
      const ctx = canvas.getContext("2d");
      ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
      ctx.fillStyle = "#e9ecf1";
      ctx.fillRect(0, 0, size, size);
      const bw = x2 - x1;
      const bh = y2 - y1;
      const scale = Math.min(size / bw, size / bh);
      const dw = bw * scale;
      const dh = bh * scale;
      ctx.imageSmoothingQuality = "high";
      ctx.drawImage(img, x1 * sx, y1 * sy, bw * sx, bh * sy, (size - dw) / 2, (size - dh) / 2, dw, dh);
      canvas.dataset.drawn = `${n}:${box.join(",")}`;
    };
    if (img.complete && img.naturalWidth) paint();
    else img.addEventListener("load", paint, { once: true });
  }

  // -- CoT: image tabs and tables ----------------------------------------------------------------
  ensureImage(n, focus = false) {
    n = Number(n);
    let entry = this.imageTabs.get(n);
    if (!entry) {
      this.tablesEmpty.remove();
      const info = this.imageInfo(n);
      const thumb = info && info.url ? h("img", { class: "thumb", src: info.url, alt: "" }) : h("span", { class: "thumb none" });
      const tab = h(
        "button",
        {
          class: "subtab",
          type: "button",
          role: "tab",
          id: `${this.uid}-sub-${n}`,
          "aria-controls": `${this.uid}-subpane-${n}`,
          tabindex: "-1",
          dataset: { sub: String(n) },
          onclick: () => {
            this.follow = false;
            this.showSubTab(n);
          },
        },
        thumb,
        h("span", { text: `Image ${n}` }),
      );
      const frame = this.makeFrame(n, "table-frame");
      const toggle = h("input", {
        type: "checkbox",
        onchange: (ev) => {
          frame.dataset.all = ev.target.checked ? "1" : "";
          this.restFrame(frame);
        },
      });
      const bodies = {};
      const sections = [];
      const specs = [
        ["characters", "Characters", ["ID", "Name", "Description", "Emotions", "Actions", "Narrative function", "Bounding box"]],
        ["objects", "Objects", ["ID", "Description", "Function", "Interaction", "Narrative function", "Bounding box"]],
        ["settings", "Setting", ["Setting element", "Description", "Mood", "Time", "Narrative function"]],
      ];
      for (const [key, title, headers] of specs) {
        bodies[key] = h("tbody");
        const empty = h("p", { class: "empty table-empty", text: `No ${title.toLowerCase()} rows.` });
        bodies[key].emptyNote = empty;
        sections.push(
          h(
            "section",
            { class: `cot-table ${key}`, dataset: { table: key } },
            h("h4", { text: title }),
            h("div", { class: "table-wrap" }, h("table", {}, h("thead", {}, h("tr", {}, headers.map((t) => h("th", { text: t })))), bodies[key])),
            empty,
          ),
        );
      }
      const pane = h(
        "div",
        { class: "subpane image-pane", role: "tabpanel", id: `${this.uid}-subpane-${n}`, "aria-labelledby": `${this.uid}-sub-${n}`, dataset: { sub: String(n) }, hidden: true },
        h(
          "div",
          { class: "image-col" },
          frame,
          h("label", { class: "check" }, toggle, " Show all boxes"),
          info && info.name ? h("p", { class: "muted small", text: info.name }) : null,
        ),
        h("div", { class: "tables-col" }, sections),
      );
      entry = { tab, pane, frame, bodies };
      this.imageTabs.set(n, entry);
      // keep image tabs in number order, the narrative tab last
      const later = Array.from(this.imageTabs.keys())
        .filter((k) => k > n)
        .sort((a, b) => a - b)[0];
      const beforeTab = later !== undefined ? this.imageTabs.get(later).tab : this.narrative ? this.narrative.tab : null;
      this.subTabs.insertBefore(tab, beforeTab);
      this.subPanes.appendChild(pane);
      rovingIndex(this.subTabs);
      if (!this.entities.has(n)) this.entities.set(n, new Map());
      if (this.imageTabs.size === 1 && !this.narrative) this.showSubTab(n);
    }
    if (focus && this.follow) this.showSubTab(n);
    return entry;
  }

  addRow(n, table, row) {
    n = Number(n);
    this.hasCot = true;
    const entry = this.ensureImage(n);
    const body = entry.bodies[table];
    if (!body) return;
    if (body.emptyNote) body.emptyNote.hidden = true;
    let cells;
    let tr;
    if (table === "settings") {
      cells = [row.element, row.description, row.mood, row.time, row.narrative_function];
      tr = h("tr");
    } else {
      const id = String(row.id || "");
      cells =
        table === "characters"
          ? [id, row.name, row.description, row.emotions, row.actions, row.narrative_function, boxText(row.box)]
          : [id, row.description, row.function, row.interaction, row.narrative_function, boxText(row.box)];
      tr = h("tr", { class: `entity ${kindClass(id)}`, dataset: { id } });
      const ents = this.entities.get(n);
      if (id && !ents.has(id)) ents.set(id, { table, row });
      if (id) {
        const frames = this.appear.get(id) || [];
        if (!frames.includes(n)) frames.push(n);
        this.appear.set(id, frames);
      }
      if (table === "characters" || idKind(id) === "char") this.noteCharacter(id, n, row);
    }
    cells.forEach((value, i) => {
      const td = h("td", { text: value === null || value === undefined ? "" : String(value) });
      if (i === 0 && table !== "settings") {
        td.className = Array.isArray(row.box) ? "id-cell has-box" : "id-cell";
        td.tabIndex = 0;
      } else if (i === cells.length - 1 && table !== "settings") {
        td.className = "box-cell";
      }
      tr.appendChild(td);
    });
    body.appendChild(tr);
  }

  ensureNarrative(focus = false) {
    if (!this.narrative) {
      this.tablesEmpty.remove();
      const tab = h(
        "button",
        {
          class: "subtab narrative",
          type: "button",
          role: "tab",
          id: `${this.uid}-sub-narrative`,
          "aria-controls": `${this.uid}-subpane-narrative`,
          tabindex: "-1",
          dataset: { sub: "narrative" },
          onclick: () => {
            this.follow = false;
            this.showSubTab("narrative");
          },
        },
        h("span", { class: "book", "aria-hidden": "true" }),
        h("span", { text: "Narrative Structure" }),
      );
      const body = h("tbody");
      const pane = h(
        "div",
        { class: "subpane narrative-pane", role: "tabpanel", id: `${this.uid}-subpane-narrative`, "aria-labelledby": `${this.uid}-sub-narrative`, dataset: { sub: "narrative" }, hidden: true },
        h("h4", { text: "Narrative Structure" }),
        h(
          "div",
          { class: "table-wrap" },
          h("table", {}, h("thead", {}, h("tr", {}, ["Narrative phase", "Description", "Key events", "Images"].map((t) => h("th", { text: t })))), body),
        ),
      );
      this.narrative = { tab, pane, body };
      this.subTabs.appendChild(tab);
      this.subPanes.appendChild(pane);
      rovingIndex(this.subTabs);
    }
    if (focus && this.follow) this.showSubTab("narrative");
    return this.narrative;
  }

  addNarrativeRow(row) {
    const { body } = this.ensureNarrative();
    const images = Array.isArray(row.images) ? row.images.join(", ") : String(row.images_text || "");
    body.appendChild(h("tr", {}, [row.phase, row.description, row.key_events, images].map((v) => h("td", { text: v == null ? "" : String(v) }))));
  }

  // -- characters ---------------------------------------------------------------------------------
  noteCharacter(id, n, row) {
    if (!id) return;
    let card = this.charCards.get(id);
    if (!card) {
      this.charEmpty.hidden = true;
      const canvas = h("canvas", { class: "crop", width: "88", height: "88", "aria-label": `crop of ${id}` });
      const appears = h("span", { class: "appears-list" });
      const el = h(
        "article",
        { class: "char-card", dataset: { id }, tabindex: "0" },
        canvas,
        h(
          "div",
          { class: "char-body" },
          h("div", { class: "char-head" }, h("span", { class: "char-name", text: row.name || id }), h("span", { class: "id-chip", text: id })),
          row.description ? h("p", { class: "char-desc", text: row.description }) : null,
          row.emotions ? h("p", { class: "char-meta" }, h("b", { text: "Emotions: " }), row.emotions) : null,
          h("p", { class: "char-meta" }, h("b", { text: "Appears in: " }), appears),
        ),
      );
      card = { el, canvas, appears, frames: [], cropped: false };
      this.charCards.set(id, card);
      this.charList.appendChild(el);
    }
    if (!card.frames.includes(n)) {
      card.frames.push(n);
      card.appears.appendChild(h("span", { class: "frame-chip", dataset: { image: String(n) }, text: `Image ${n}` }));
    }
    if (!card.cropped && Array.isArray(row.box) && this.imageInfo(n) && this.imageInfo(n).url) {
      card.cropped = true; // the first appearance that has a box
      this.drawCrop(card.canvas, n, row.box);
    }
  }

  // -- story -------------------------------------------------------------------------------------
  startSegment(image) {
    this.endSegment();
    this.hasStory = true;
    this.storyEmpty.remove();
    const n = image === null || image === undefined ? null : Number(image);
    const card = h("article", { class: "story-card card", dataset: { image: n === null ? "" : String(n) } });
    const para = h("p", { class: "story-text" });
    if (n === null) {
      card.classList.add("outside");
      append(card, [h("h3", { text: "Story text outside any image" }), para]);
    } else {
      const frame = this.makeFrame(n, "story-frame");
      append(card, [h("div", { class: "story-media" }, frame), h("div", { class: "story-body" }, h("h3", { text: `Image ${n}` }), para)]);
    }
    this.storyCol.appendChild(card);
    this.segment = { card, para, n, fresh: true };
    return this.segment;
  }

  endSegment() {
    this.span = null;
    this.segment = null;
  }

  openSpan(kind, ids) {
    if (!this.segment) this.startSegment(null);
    ids = (ids || []).map(String);
    const span = h("span", {
      class: `tag ${["gdo", "gda", "gdl"].includes(kind) ? kind : "gdx"}`,
      tabindex: "0",
      dataset: { ids: ids.join(" "), kind: String(kind) },
    });
    const known = this.segment.n !== null ? this.entities.get(this.segment.n) : null;
    if (!ids.length || ids.some((id) => !known || !known.has(id))) span.classList.add("unknown");
    this.segment.para.appendChild(span);
    this.segment.fresh = false;
    this.span = span;
    return span;
  }

  appendText(text) {
    if (!this.segment) this.startSegment(null);
    if (this.segment.fresh && !this.span) {
      text = text.replace(/^\s+/, "");
      if (!text) return;
      this.segment.fresh = false;
    }
    (this.span || this.segment.para).appendChild(document.createTextNode(text));
  }

  closeSpan(ev) {
    if (!this.span) this.openSpan(ev.kind, ev.ids);
    this.span.textContent = ev.text == null ? this.span.textContent : String(ev.text);
    this.span = null;
  }

  addSpan(span) {
    this.openSpan(span.kind, span.ids);
    this.closeSpan(span);
  }

  // -- hover -------------------------------------------------------------------------------------
  entityTip(n, ids) {
    const table = this.entities.get(n);
    const blocks = [];
    if (!ids.length) blocks.push(h("div", { class: "tip-miss", text: "This tag names no entity." }));
    for (const id of ids) {
      const entry = table && table.get(id);
      if (!entry) {
        blocks.push(h("div", { class: "tip-entity" }, h("div", { class: "tip-title", text: id }), h("div", { class: "tip-miss", text: `Not in the chain-of-thought of image ${n}.` })));
        continue;
      }
      const row = entry.row;
      const kind = idKind(id);
      const fields =
        entry.table === "characters"
          ? [
              ["Description", row.description],
              ["Emotions", row.emotions],
              ["Actions", row.actions],
              ["Narrative function", row.narrative_function],
            ]
          : [
              ["Function", row.function],
              ["Interaction", row.interaction],
              ["Narrative function", row.narrative_function],
            ];
      fields.push(["Box", boxText(row.box)]);
      fields.push(["Appears in", (this.appear.get(id) || []).map((k) => `Image ${k}`).join(", ")]);
      const title = entry.table === "characters" ? row.name || id : row.description || id;
      blocks.push(
        h(
          "div",
          { class: `tip-entity ${kindClass(id)}` },
          h("div", { class: "tip-title" }, h("i", { class: `swatch ${kindClass(id)}` }), title),
          h("div", { class: "tip-id", text: `${id} · ${kind ? KINDS[kind][0] : "entity"}` }),
          h(
            "dl",
            {},
            fields.filter(([, v]) => v !== undefined && v !== null && v !== "").map(([k, v]) => [h("dt", { text: k }), h("dd", { text: String(v) })]),
          ),
        ),
      );
    }
    return blocks;
  }

  /**
   * A tap does what hovering does: the first tap on a tag (or an id cell) opens its tooltip, pinned
   * clear of its frame; a second closes it. Whether it was open is noted at pointerdown, before the
   * tap focuses it (focusin leaves opening to the tap's click).
   */
  watchTaps(area, selector, open, close) {
    area.addEventListener("pointerdown", (ev) => {
      const target = ev.pointerType !== "mouse" && ev.target.closest ? ev.target.closest(selector) : null;
      this.tap = target ? { target, open: tooltip.pinnedTo(target) } : null;
    });
    area.addEventListener("pointercancel", () => {
      this.tap = null; // the finger scrolled: no tap
    });
    area.addEventListener("click", (ev) => {
      const tap = this.tap;
      this.tap = null;
      if (!tap || !ev.target.closest || ev.target.closest(selector) !== tap.target) return;
      if (tap.open) close();
      else open(ev);
    });
  }

  /** The tooltip of `target` (a tag, an id cell) whose boxes are on `frame`: at the pointer, or pinned. */
  showTip(children, target, frame, how, ev, close) {
    if (frame && (how === "tap" || window.matchMedia(NARROW).matches)) {
      tooltip.pin(children, { frame, anchor: target, close, touch: how === "tap" });
    } else {
      const [x, y] = how === "focus" ? anchorPoint(target) : [ev.clientX, ev.clientY];
      tooltip.show(children, x, y);
    }
  }

  /** Open a tag's boxes and tooltip; `how`: "pointer" (a mouse), "focus" or "tap". */
  onStoryOver(ev, how = "pointer") {
    const tag = ev.target.closest ? ev.target.closest(".tag") : null;
    if (!tag || (tag === this.hoverTag && how !== "tap")) return;
    if (how === "focus" && this.tap && this.tap.target === tag) return; // the tap opens it
    this.leaveTag();
    const card = tag.closest(".story-card");
    if (!card || card.dataset.image === "") return;
    const n = Number(card.dataset.image);
    const ids = (tag.dataset.ids || "").split(" ").filter(Boolean);
    const frame = card.querySelector(".frame");
    this.hoverTag = tag;
    tag.classList.add("hl");
    if (frame) this.drawBoxes(frame, n, ids);
    const head = h("div", { class: "tip-tag" }, h("span", { class: `tag ${tag.dataset.kind}`, text: `<${tag.dataset.kind}>` }), ` ${TAGS[tag.dataset.kind] || "tag"} · image ${n}`);
    this.showTip([head, ...this.entityTip(n, ids)], tag, frame, how, ev, () => this.leaveTag());
  }

  leaveTag() {
    const tag = this.hoverTag;
    if (!tag) return;
    this.hoverTag = null;
    tag.classList.remove("hl");
    const frame = tag.closest(".story-card") && tag.closest(".story-card").querySelector(".frame");
    if (frame) this.restFrame(frame);
    tooltip.hide();
  }

  onStoryOut(ev) {
    if (!this.hoverTag) return;
    const to = ev.relatedTarget;
    if (to && this.hoverTag.contains(to)) return;
    this.leaveTag();
  }

  onTableOver(ev, how = "pointer") {
    const cell = ev.target.closest ? ev.target.closest(".id-cell") : null;
    if (!cell || (cell === this.hoverCell && how !== "tap")) return;
    if (how === "focus" && this.tap && this.tap.target === cell) return; // the tap opens it
    this.leaveCell();
    const pane = cell.closest(".image-pane");
    if (!pane) return;
    const n = Number(pane.dataset.sub);
    const id = cell.closest("tr").dataset.id;
    const frame = pane.querySelector(".frame");
    this.hoverCell = cell;
    cell.closest("tr").classList.add("hl");
    this.drawBoxes(frame, n, [id]);
    this.showTip(this.entityTip(n, [id]), cell, frame, how, ev, () => this.leaveCell());
  }

  leaveCell() {
    const cell = this.hoverCell;
    if (!cell) return;
    this.hoverCell = null;
    cell.closest("tr").classList.remove("hl");
    const pane = cell.closest(".image-pane");
    if (pane) this.restFrame(pane.querySelector(".frame"));
    tooltip.hide();
  }

  onTableOut(ev) {
    if (!this.hoverCell) return;
    const to = ev.relatedTarget;
    if (to && this.hoverCell.contains(to)) return;
    this.leaveCell();
  }

  /** Hovering a character card draws its box on every story frame it appears in. */
  onCharOver(ev) {
    const card = ev.target.closest ? ev.target.closest(".char-card") : null;
    if (!card || card === this.hoverChar) return;
    this.leaveChar();
    this.hoverChar = card;
    card.classList.add("hl");
    const id = card.dataset.id;
    for (const story of this.storyCol.querySelectorAll(".story-card")) {
      const frame = story.querySelector(".frame");
      if (frame && story.dataset.image !== "") this.drawBoxes(frame, Number(story.dataset.image), [id]);
    }
  }

  leaveChar() {
    if (!this.hoverChar) return;
    this.hoverChar.classList.remove("hl");
    this.hoverChar = null;
    for (const frame of this.storyCol.querySelectorAll(".frame")) this.restFrame(frame);
  }

  onCharOut(ev) {
    if (!this.hoverChar) return;
    const to = ev.relatedTarget;
    if (to && this.hoverChar.contains(to)) return;
    this.leaveChar();
  }

  // -- streaming ---------------------------------------------------------------------------------
  /** Get ready for a stream: clear, follow the stream's tabs. */
  startStream() {
    this.follow = true;
    this.reset();
    this.statusEl.textContent = "streaming…";
    this.statusEl.className = "viewer-status busy";
    replace(this.panes.raw, h("p", { class: "empty", text: "The raw output streams into the console; it appears here when complete." }));
  }

  /** Apply one event of the streaming parser (format/events.py) to the page. */
  applyEvent(ev) {
    const name = String(ev.event || "").replace(/-/g, "_");
    switch (name) {
      case "think_opened":
        if (this.follow) this.showTab("tables");
        break;
      case "image_section_started":
        this.ensureImage(ev.image, true);
        break;
      case "table_row_completed":
        this.addRow(ev.image, ev.table, ev.row || {});
        break;
      case "narrative_started":
        this.ensureNarrative(true);
        break;
      case "narrative_row_completed":
        this.addNarrativeRow(ev.row || {});
        break;
      case "think_closed":
        if (this.follow) this.showTab("story");
        break;
      case "segment_started":
        this.startSegment(ev.image);
        if (this.follow && this.current !== "story") this.showTab("story");
        break;
      case "span_opened":
        this.openSpan(ev.kind, ev.ids);
        break;
      case "text_appended":
        this.appendText(String(ev.text || ""));
        break;
      case "span_closed":
        this.closeSpan(ev);
        break;
      case "segment_closed":
        this.endSegment();
        break;
      default:
        return false;
    }
    return true;
  }

  // -- a whole telling ---------------------------------------------------------------------------
  /** Draw a complete telling (Telling.to_dict()) and its raw text, from scratch. */
  renderTelling(telling, raw, meta = null) {
    const keepTab = this.current;
    const keepSub = this.currentSub;
    this.reset();
    this.telling = telling || {};
    this.raw = raw || "";
    const cot = this.telling.cot;
    const story = this.telling.story;
    const numbers = new Set();
    for (let k = 1; k <= this.images.length; k++) numbers.add(k);
    if (cot) for (const image of cot.images || []) numbers.add(Number(image.number));
    if (cot) {
      for (const k of Array.from(numbers).sort((a, b) => a - b)) this.ensureImage(k);
      for (const image of cot.images || []) {
        for (const table of ["characters", "objects", "settings"]) {
          for (const row of image[table] || []) this.addRow(image.number, table, row);
        }
      }
      if (cot.narrative !== null && cot.narrative !== undefined) {
        this.ensureNarrative();
        for (const row of cot.narrative) this.addNarrativeRow(row);
      }
      for (const [n, entry] of this.imageTabs) {
        if (!(cot.images || []).some((i) => Number(i.number) === n)) {
          entry.pane.querySelector(".tables-col").prepend(h("p", { class: "note", text: `The chain-of-thought has no section for image ${n}.` }));
        }
      }
    } else {
      replace(this.subPanes, h("p", { class: "empty", text: "The output has no chain-of-thought." }));
    }
    if (story) {
      const segments = (story.segments || []).map((s, i) => [s.image === null || s.image === undefined ? Infinity : Number(s.image), i, s]);
      const told = new Set(segments.map(([n]) => n));
      for (let k = 1; k <= this.images.length; k++) if (!told.has(k)) segments.push([k, -1, null]);
      segments.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
      for (const [n, , segment] of segments) {
        if (!segment) {
          this.startSegment(n);
          this.segment.para.appendChild(h("span", { class: "note", text: "No story segment for this image." }));
          this.endSegment();
          continue;
        }
        this.startSegment(segment.image);
        for (const part of segmentParts(segment)) {
          if (typeof part === "string") this.appendText(part);
          else this.addSpan(part);
        }
        this.endSegment();
      }
    } else {
      replace(this.storyCol, h("p", { class: "empty", text: "The output has no grounded story; its raw text is under Raw output." }));
    }
    if (!this.charCards.size) this.charEmpty.textContent = cot ? "The chain-of-thought names no characters." : "No chain-of-thought, so no characters.";
    this.renderDiagnostics(this.telling);
    this.renderRaw(this.raw);
    this.renderStatus(this.telling, meta);
    this.exportBtn.disabled = !this.options.exportSource || !this.raw;
    // stay where the user was
    this.showTab(keepTab || "story");
    if (keepSub && (keepSub === "narrative" ? this.narrative : this.imageTabs.has(Number(keepSub)))) this.showSubTab(keepSub);
    else if (this.imageTabs.size) this.showSubTab(Math.min(...this.imageTabs.keys()));
  }

  renderStatus(telling, meta) {
    clear(this.statusEl);
    this.statusEl.className = "viewer-status";
    const ok = telling.well_structured;
    if (ok !== undefined) {
      this.statusEl.appendChild(h("span", { class: `badge ${ok ? "ok" : "bad"}`, text: ok ? "well-structured" : "not well-structured" }));
    }
    const bits = [];
    if (meta) {
      if (meta.backend) bits.push(String(meta.backend));
      if (meta.model && meta.model !== meta.backend) bits.push(String(meta.model));
      const usage = meta.usage || {};
      if (typeof usage.seconds === "number") bits.push(`${usage.seconds.toFixed(1)} s`);
      if (usage.completion_tokens) bits.push(`${usage.completion_tokens} tokens`);
    }
    if (bits.length) this.statusEl.appendChild(h("span", { class: "muted", text: bits.join(" · ") }));
  }

  renderDiagnostics(telling) {
    const list = telling.diagnostics || [];
    const counts = { error: 0, warning: 0, info: 0 };
    for (const d of list) counts[d.severity] = (counts[d.severity] || 0) + 1;
    this.tabs.diagnostics.textContent = `Diagnostics (${list.length})`;
    this.tabs.diagnostics.className = `tab${counts.error ? " has-errors" : counts.warning ? " has-warnings" : ""}`;
    if (this.current === "diagnostics") this.tabs.diagnostics.classList.add("active");
    const pane = this.panes.diagnostics;
    clear(pane);
    const ok = telling.well_structured;
    const reasons = telling.reasons || [];
    pane.appendChild(
      h(
        "p",
        { class: `verdict ${ok ? "ok" : "bad"}` },
        ok ? "Well-structured." : `Not well-structured: ${reasons.length} error${reasons.length === 1 ? "" : "s"} count against it.`,
        h("span", { class: "muted", text: `  ${counts.error} errors · ${counts.warning} warnings · ${counts.info} notes` }),
      ),
    );
    if (!list.length) {
      pane.appendChild(h("p", { class: "empty", text: "No findings: the output follows the published format." }));
      return;
    }
    const body = h("tbody");
    for (const d of list) {
      body.appendChild(
        h(
          "tr",
          { class: `sev-${d.severity}` },
          h("td", {}, d.line ? h("button", { class: "link", type: "button", dataset: { gotoLine: String(d.line) }, text: `line ${d.line}` }) : "text"),
          h("td", {}, h("span", { class: `sev ${d.severity}`, text: d.severity })),
          h("td", {}, h("code", { text: d.code })),
          h("td", { text: d.message }),
        ),
      );
    }
    pane.appendChild(
      h("div", { class: "table-wrap" }, h("table", { class: "diagnostics" }, h("thead", {}, h("tr", {}, ["Line", "Severity", "Code", "Message"].map((t) => h("th", { text: t })))), body)),
    );
  }

  renderRaw(raw) {
    const pane = this.panes.raw;
    clear(pane);
    if (!raw) {
      pane.appendChild(h("p", { class: "empty", text: "No output." }));
      return;
    }
    const lines = raw.split("\n");
    const pre = h("pre", { class: "raw-text" });
    lines.forEach((line, i) => {
      pre.appendChild(h("span", { class: "raw-line", dataset: { line: String(i + 1) } }, h("span", { class: "ln", text: String(i + 1) }), line, "\n"));
    });
    pane.appendChild(h("p", { class: "muted small", text: `${raw.length} characters, ${lines.length} lines, as the teller wrote them.` }));
    pane.appendChild(pre);
  }

  gotoLine(n) {
    this.showTab("raw");
    for (const el of this.panes.raw.querySelectorAll(".raw-line.hl")) el.classList.remove("hl");
    const line = this.panes.raw.querySelector(`.raw-line[data-line="${Number(n)}"]`);
    if (line) {
      line.classList.add("hl");
      line.scrollIntoView({ block: "center" });
    }
  }

  // -- export ------------------------------------------------------------------------------------
  async export() {
    const source = this.options.exportSource && this.options.exportSource();
    if (!source || !this.raw) return;
    this.exportBtn.disabled = true;
    try {
      const response = await api("/api/export", { json: { ...source, text: this.raw, title: this.title }, raw: true });
      const blob = await response.blob();
      download(blob, exportName(response.headers.get("content-disposition") || "", this.title));
      this.setMessage("");
    } catch (err) {
      this.setMessage(err instanceof ApiError ? err.message : String(err), "error");
    } finally {
      this.exportBtn.disabled = false;
    }
  }
}

/**
 * The file name the server gave an export: RFC 6266's filename* (UTF-8, percent-encoded:
 * every script's letters kept) before the plain filename (ASCII); else one made from the title.
 */
export function exportName(disposition, title) {
  const extended = /filename\*\s*=\s*UTF-8''([^;\s]+)/i.exec(disposition);
  if (extended) {
    try {
      return decodeURIComponent(extended[1]);
    } catch {
      // malformed: the plain name
    }
  }
  const plain = /filename\s*=\s*"?([^";]+)"?/i.exec(disposition);
  if (plain) return plain[1];
  return `${title.normalize("NFC").replace(/[^\p{L}\p{N}_.-]+/gu, "-").replace(/^[-._]+|[-._]+$/g, "") || "story"}.html`;
}

function labelOf(label) {
  return label ? h("div", { class: "viewer-label", text: label }) : null;
}

