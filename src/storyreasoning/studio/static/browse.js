// The Datasets and Runs pages: browse a dataset's stories, a run's outputs and metrics,
// and put two runs (or a run and the reference) side by side on the same story.
//
// Routes (app.js): #datasets/NAME/STORY?split=SPLIT (no split: the dataset's first),
// #runs/RUN/STORY/vs/run/OTHER (another run) and #runs/RUN/STORY/vs/reference (the
// dataset's own output); the older #runs/RUN/STORY/vs/OTHER still names a run. The page of a
// list and its search are in the route too (?offset=50&q=WORD, left out when 0 or empty),
// so a reload, Back or a shared link shows the same list beside the story. A list
// shows the answer to the last request made for it: an answer that comes after a newer
// request (a slow first page, then a search) is dropped.

import { api, ApiError, seg, storyPath, withQuery } from "./api.js";
import { h, clear, replace, formatNumber } from "./dom.js";
import { Viewer } from "./viewer.js";

const PAGE = 50;
const MAX_OFFSET = 10_000_000; // the server's bound (API.md, Bounds)

/** A list's page and search as a route has them: {q, offset}; what is not a page offset is 0. */
function listQuery(query) {
  const q = (query && query.get("q")) || "";
  const text = (query && query.get("offset")) || "";
  const offset = /^\d{1,8}$/.test(text) ? Math.min(Number(text), MAX_OFFSET) : 0;
  return { q: q.trim(), offset };
}

/** The route's query for a list's page and search (nothing when on the first page, unsearched). */
function listRoute(q, offset) {
  return { q: q || null, offset: offset || null };
}

function errorText(err) {
  return err instanceof ApiError ? err.message : String(err && err.message ? err.message : err);
}

function alertBox(text) {
  return h("div", { class: "alert error", role: "alert", text });
}

function frameImages(frames) {
  return (frames || []).map((f, i) => ({ url: f.url, width: f.width, height: f.height, name: `frame ${i + 1}` }));
}

let turned = false; // a pager's button was pressed: the list it brings takes the focus and the view (settlePager)

/** A "previous / next" pager; onPage(offset). */
function pager(total, offset, onPage) {
  const last = Math.max(0, total - 1);
  const from = total ? offset + 1 : 0;
  const to = Math.min(total, offset + PAGE);
  const turn = (to) => {
    turned = true;
    onPage(to);
  };
  return h(
    "div",
    { class: "pager" },
    h("button", { type: "button", class: "btn small", dataset: { turn: "previous" }, text: "‹ Previous", disabled: offset <= 0, onclick: () => turn(Math.max(0, offset - PAGE)) }),
    h("span", { class: "muted small", text: `${from}–${to} of ${total}` }),
    h("button", { type: "button", class: "btn small", dataset: { turn: "next" }, text: "Next ›", disabled: offset + PAGE > last, onclick: () => turn(offset + PAGE) }),
  );
}

/**
 * After a page of a list was turned to: the list is drawn anew, so the button pressed is gone
 * and the focus with it (a keyboard user would start again at the top of the studio), and the
 * window may be left far below the list's new first rows. The focus goes to the new pager
 * (its Next, else its Previous) and the list's top is brought into view.
 */
function settlePager(list) {
  if (!turned) return;
  turned = false;
  const button = list.querySelector('.pager [data-turn="next"]:not([disabled])') || list.querySelector('.pager [data-turn="previous"]:not([disabled])');
  if (button) button.focus({ preventScroll: true });
  const bar = document.querySelector(".topbar");
  const below = bar ? bar.getBoundingClientRect().bottom : 0;
  const top = list.getBoundingClientRect().top;
  if (top < below) window.scrollBy({ top: top - below - 8, behavior: "instant" });
}

/**
 * The numbers a run leads with come from the server (a run's ``headline``: evaluate's one
 * definition, each row {key, label, text, reference_text, story, note}); a story leads with
 * those of them that have a per-story column (``story``). The rest of evaluate's numbers
 * (about 90 per story) are folded behind "all metrics".
 */

/** A run's per-story headline columns: [[label, per-story key]]. */
function storyHeadline(run) {
  return ((run && run.headline) || []).filter((row) => row.story).map((row) => [row.label, row.story]);
}

/** The scalar numbers of one metric family's overall results: [[key, value]]. */
function scalars(values) {
  if (!values || typeof values !== "object") return [];
  return Object.entries(values).filter(([, v]) => v === null || typeof v === "number" || typeof v === "boolean");
}

function metricChips(entries, className = "metrics") {
  return h(
    "dl",
    { class: className },
    entries.map(([k, v, title, text]) =>
      h("div", { class: "metric", title: title || k, dataset: { key: title || k } }, h("dt", { text: k.replace(/_/g, " ") }), h("dd", { text: text ?? formatNumber(v) })),
    ),
  );
}

/** A story's headline value as a person reads it: its well-structured verdict as yes or no. */
function headlineText(key, value) {
  if (key === "consistency.well_structured") return value === true || value === 1 ? "yes" : value === false || value === 0 ? "no" : formatNumber(value);
  return formatNumber(value);
}

/** A story's headline tiles (those of ``columns`` it has): [[label, value, key, text]]. */
function storyEntries(metrics, columns) {
  return columns
    .map(([label, key]) => [label, metrics[key], key])
    .filter(([, v]) => v !== undefined && v !== null)
    .map(([label, v, key]) => [label, v, key, headlineText(key, v)]);
}

/** A run's headline as a table: metric, value (a judge's mean with its interval) and the reference's own value. */
function headlineTable(rows) {
  const withReference = rows.some((row) => row.reference !== null && row.reference !== undefined);
  return h(
    "table",
    { class: "headline-table" },
    h(
      "thead",
      {},
      h(
        "tr",
        {},
        h("th", { text: "metric" }),
        h("th", { class: "num", text: "value" }),
        withReference ? h("th", { class: "num", text: "reference", title: "the reference dataset's own outputs, scored the same way" }) : null,
      ),
    ),
    h(
      "tbody",
      {},
      rows.map((row) =>
        h(
          "tr",
          { dataset: { key: row.key }, title: row.note || row.key },
          h("td", { text: row.label }),
          h("td", { class: "num", text: row.text }),
          withReference ? h("td", { class: "num muted", text: row.reference_text }) : null,
        ),
      ),
    ),
  );
}

/** A folded "all metrics (n)" with ``content`` inside. */
function allMetrics(count, content) {
  return h("details", { class: "more-metrics all-metrics" }, h("summary", { text: `all metrics (${count})` }), content);
}

/** A run's evaluation: the headline (served by the API) with how many stories had an output where some
 * had none, then every family's numbers folded, then which backend made the language numbers. */
function metricsBlock(run) {
  const metrics = run.metrics;
  const headline = run.headline || [];
  if (!metrics && !headline.length) return h("p", { class: "muted small", text: "Not evaluated yet (storyreasoning evaluate)." });
  const families = Object.entries(metrics || {}).filter(([, v]) => v && typeof v === "object");
  if (!families.length && !headline.length) return h("p", { class: "muted small", text: "No metrics." });
  const count = families.reduce((n, [, values]) => n + scalars(values).length, 0);
  return h(
    "div",
    { class: "run-metrics" },
    headline.length ? headlineTable(headline) : null,
    run.outputs ? h("p", { class: "note outputs-line", text: run.outputs }) : null,
    allMetrics(
      count,
      h(
        "div",
        { class: "metric-families" },
        families.map(([family, values]) => h("div", { class: "metric-family", dataset: { family } }, h("h5", { text: family }), metricChips(scalars(values)))),
      ),
    ),
    run.language_signature
      ? h("p", { class: "muted language-signature", title: "the tokenizer and METEOR behind BLEU, METEOR, ROUGE-L and CIDEr", text: `language: ${run.language_signature}` })
      : null,
  );
}


function tellerName(manifest) {
  const t = (manifest && manifest.teller) || {};
  return t.label || t.model || t.backend || "unknown teller";
}

function datasetLine(manifest) {
  const d = (manifest && manifest.dataset) || {};
  return [d.source, d.split].filter(Boolean).join(" · ");
}

// -- datasets -----------------------------------------------------------------------------------

export class DatasetsPage {
  constructor(root, config, router) {
    this.root = root;
    this.config = config;
    this.router = router;
    this.state = { name: null, split: "", q: "", offset: 0 };
    this.viewer = new Viewer({
      title: "Story",
      exportSource: () => (this.shown ? { dataset: this.shown.name, split: this.shown.split || null, story_id: this.shown.story_id } : null),
    });
    this.listEl = h("div", { class: "dataset-list" });
    this.storiesEl = h("div", { class: "story-list" });
    this.detailEl = h("div", { class: "result" }, h("p", { class: "empty", text: "Choose a story to view it." }));
    this.root.appendChild(h("div", { class: "two-col browse" }, h("div", { class: "setup" }, h("div", { class: "card" }, h("h3", { text: "Datasets" }), this.listEl), h("div", { class: "card" }, this.storiesEl)), this.detailEl));
    this.loaded = false;
  }

  async enter(parts, query) {
    if (!this.loaded) {
      this.loaded = true;
      try {
        const data = await api("/api/datasets");
        this.datasets = data.datasets || [];
      } catch (err) {
        replace(this.listEl, alertBox(errorText(err)));
        this.datasets = [];
      }
      this.renderDatasets();
    }
    const [name, storyId] = parts;
    const chosen = name || (this.datasets.length ? this.datasets[0].name : null);
    if (!chosen) return;
    const asked = query ? query.get("split") : null;
    const split = this.splitOf(chosen, asked);
    // a split the dataset lacks: its first is shown (and selected), with one note saying so
    const note = asked && split && split !== asked ? `This dataset has no split "${asked}"; showing "${split}", its first.` : "";
    const { q, offset } = listQuery(query);
    this.storyInRoute = storyId === undefined ? null : storyId;
    if (chosen !== this.state.name || split !== this.state.split || note !== (this.splitNote || "")) {
      this.splitNote = note;
      await this.choose(chosen, split, q, offset);
    } else if (q !== this.state.q || offset !== this.state.offset) {
      this.state.q = q;
      this.state.offset = offset;
      await this.loadStories();
    }
    if (!storyId) this.showNothing();
    else if (!this.isShown(chosen, split, storyId)) await this.open(chosen, storyId);
  }

  /** The split a route names, or the dataset's first ("" when it has only one: no selector). */
  splitOf(name, asked) {
    const d = this.datasets.find((x) => x.name === name);
    const splits = (d && d.splits) || [];
    if (splits.length <= 1) return "";
    return asked && splits.includes(asked) ? asked : splits[0];
  }

  /** The route of a story (or of the list, without one) of the dataset, split and list page shown. */
  route(storyId = null, list = this.state) {
    const { name, split } = this.state;
    return [["datasets", name, ...(storyId === null ? [] : [storyId])], { split, ...listRoute(list.q, list.offset) }];
  }

  isShown(name, split, storyId) {
    const shown = this.shown;
    return Boolean(shown) && shown.name === name && shown.split === split && (shown.story_id === storyId || shown.asked === storyId);
  }

  /** No story in the route: none is shown (nor marked in the list). */
  showNothing() {
    this.openToken = (this.openToken || 0) + 1; // a story still loading is not shown either
    this.shown = null;
    replace(this.detailEl, h("p", { class: "empty", text: "Choose a story to view it." }));
    this.markShown();
  }

  renderDatasets() {
    clear(this.listEl);
    if (!this.datasets.length) {
      this.listEl.appendChild(h("p", { class: "empty", text: "No datasets: start the studio with --dataset NAME=SOURCE." }));
      return;
    }
    for (const d of this.datasets) {
      this.listEl.appendChild(
        h(
          "button",
          { type: "button", class: `list-item${d.name === this.state.name ? " active" : ""}`, dataset: { name: d.name }, onclick: () => this.router.go(["datasets", d.name]) },
          h("span", { class: "li-title", text: d.name }),
          h("span", { class: "li-sub", text: d.source || "" }),
        ),
      );
    }
  }

  async choose(name, split, q = "", offset = 0) {
    this.state = { name, split, q, offset };
    this.renderDatasets();
    await this.loadStories();
  }

  async loadStories() {
    const token = (this.listToken = (this.listToken || 0) + 1);
    const stale = () => token !== this.listToken; // a newer list was asked for meanwhile
    const { name, split, q, offset } = this.state;
    const d = this.datasets.find((x) => x.name === name) || {};
    const search = h("input", { type: "search", placeholder: "story id contains…", value: q, "aria-label": "Search story ids" });
    search.addEventListener("change", () => this.router.go(...this.route(this.storyInRoute, { q: search.value.trim(), offset: 0 })));
    const controls = h("div", { class: "list-controls" }, search);
    const note = this.splitNote ? h("p", { class: "alert warn split-note", role: "status", text: this.splitNote }) : null;
    if (d.splits && d.splits.length > 1) {
      const select = h(
        "select",
        {
          "aria-label": "Split",
          // the split is in the route: a reload, Back and a shared link show the same list
          onchange: (ev) => this.router.go(["datasets", name], { split: ev.target.value }),
        },
        d.splits.map((s) => h("option", { value: s, text: s, selected: s === split })),
      );
      controls.prepend(select);
    }
    replace(this.storiesEl, h("h3", { text: "Stories" }), note, controls, h("p", { class: "muted small", text: "Loading…" }));
    try {
      const data = await api(withQuery(`/api/datasets/${seg(name)}/stories`, { split, offset, limit: PAGE, q }));
      if (stale()) return;
      const list = h(
        "div",
        { class: "rows" },
        (data.stories || []).map((s) =>
          h(
            "button",
            { type: "button", class: "list-item story-row", dataset: { story: s.story_id }, onclick: () => this.router.go(...this.route(s.story_id)) },
            h("span", { class: "li-title", text: s.story_id }),
            h("span", { class: "li-sub", text: `${s.frames} frame${s.frames === 1 ? "" : "s"}` }),
          ),
        ),
      );
      if (!(data.stories || []).length) list.appendChild(h("p", { class: "empty", text: q ? "No story id matches." : "This dataset has no stories." }));
      replace(
        this.storiesEl,
        h("h3", { text: "Stories" }),
        note,
        controls,
        list,
        pager(data.total || 0, offset, (o) => this.router.go(...this.route(this.storyInRoute, { q, offset: o }))),
      );
      this.markShown();
      settlePager(this.storiesEl);
    } catch (err) {
      if (!stale()) replace(this.storiesEl, h("h3", { text: "Stories" }), note, controls, alertBox(errorText(err)));
    }
  }

  /** Mark the row of the story shown: the same id in another dataset or split is another story. */
  markShown() {
    const shown = this.shown;
    const here = Boolean(shown) && shown.name === this.state.name && shown.split === this.state.split;
    for (const row of this.storiesEl.querySelectorAll(".story-row")) {
      row.classList.toggle("active", here && row.dataset.story === shown.story_id);
    }
  }

  async open(name, storyId) {
    const token = (this.openToken = (this.openToken || 0) + 1);
    const split = this.state.split;
    replace(this.detailEl, h("p", { class: "muted", text: `Loading ${storyId}…` }));
    try {
      const data = await api(storyPath(`/api/datasets/${seg(name)}`, storyId, { split }));
      if (token !== this.openToken) return; // another story was asked for meanwhile
      this.shown = { name, split, story_id: data.story_id, asked: storyId };
      this.viewer.setImages(frameImages(data.frames));
      this.viewer.setTitle(`${name} · ${data.story_id}`);
      replace(this.detailEl, this.viewer.root);
      this.viewer.renderTelling(data.telling, data.raw || "", null);
      this.markShown();
    } catch (err) {
      if (token === this.openToken) replace(this.detailEl, alertBox(errorText(err)));
    }
  }
}

// -- runs ---------------------------------------------------------------------------------------

export class RunsPage {
  constructor(root, config, router) {
    this.root = root;
    this.config = config;
    this.router = router;
    this.runs = null;
    this.runsEl = h("div", { class: "runs" });
    this.storiesEl = h("div", { class: "run-stories" });
    this.detailEl = h("div", { class: "run-detail" });
    this.root.appendChild(h("div", { class: "runs-page" }, this.runsEl, this.storiesEl, this.detailEl));
    this.offset = 0;
    this.q = "";
  }

  async enter(parts, query) {
    if (this.runs === null) await this.loadRuns();
    const [run, storyId, vs, kind, name] = parts;
    const list = listQuery(query);
    this.parts = parts;
    let other = null; // what to show beside the story: {reference: true} or {run: NAME}
    if (vs === "vs" && kind) {
      if (kind === "run" && name) other = { run: name };
      else if (kind === "reference") other = { reference: true };
      else other = { run: kind }; // the older #runs/RUN/STORY/vs/OTHER
    }
    if (run !== this.run || !this.storiesLoaded) {
      this.run = run || null;
      this.offset = list.offset;
      this.q = list.q;
      this.renderRuns();
      if (this.run) await this.loadStories();
      else {
        clear(this.storiesEl);
        clear(this.detailEl);
      }
    } else if (list.q !== this.q || list.offset !== this.offset) {
      this.q = list.q;
      this.offset = list.offset;
      await this.loadStories(); // another page of the list: the story beside it stays as it is
      if (this.shownKey === JSON.stringify([run, storyId || null, other])) return;
    }
    if (run && storyId) await this.openStory(run, storyId, other);
    else {
      this.openToken = (this.openToken || 0) + 1;
      this.shownKey = this.shownStory = null;
      clear(this.detailEl);
    }
  }

  /** Go to ``parts`` (after "runs") with the list's page and search (those shown, unless given). */
  go(parts, list = { q: this.q, offset: this.offset }) {
    this.router.go(["runs", ...parts], listRoute(list.q, list.offset));
  }

  async loadRuns() {
    try {
      const data = await api("/api/runs");
      this.runs = data.runs || [];
    } catch (err) {
      this.runs = [];
      this.runsError = errorText(err);
    }
  }

  renderRuns() {
    clear(this.runsEl);
    this.runsEl.appendChild(h("h2", { class: "page-title", text: "Evaluation runs" }));
    if (this.runsError) this.runsEl.appendChild(alertBox(this.runsError));
    if (!this.runs.length) {
      this.runsEl.appendChild(h("p", { class: "empty", text: "No runs: tell a dataset with `storyreasoning tell-dataset`, then start the studio with --runs FOLDER." }));
      return;
    }
    const grid = h("div", { class: "run-cards" });
    for (const run of this.runs) {
      grid.appendChild(
        h(
          "article",
          { class: `card run-card${run.name === this.run ? " active" : ""}`, dataset: { run: run.name } },
          h(
            "div",
            { class: "card-head" },
            h("h3", {}, h("button", { type: "button", class: "link run-open", text: run.name, onclick: () => this.router.go(["runs", run.name]) })),
            h("span", { class: "spacer" }),
            h("span", { class: "badge", text: `${run.stories} stor${run.stories === 1 ? "y" : "ies"}` }),
            run.failed
              ? h("span", { class: "badge bad failed-count", title: "stories the teller failed on (errors.jsonl): listed with their error", text: `${run.failed} failed` })
              : null,
          ),
          h("p", { class: "muted small" }, h("b", { text: tellerName(run.manifest) }), datasetLine(run.manifest) ? ` · ${datasetLine(run.manifest)}` : ""),
          metricsBlock(run),
        ),
      );
    }
    this.runsEl.appendChild(grid);
  }

  async loadStories() {
    const token = (this.listToken = (this.listToken || 0) + 1);
    const stale = () => token !== this.listToken; // a newer list was asked for meanwhile
    const run = this.run;
    const q = this.q;
    const search = h("input", { type: "search", placeholder: "story id contains…", value: q, "aria-label": "Search story ids" });
    search.addEventListener("change", () => this.go(this.parts, { q: search.value.trim(), offset: 0 }));
    const every = h("input", {
      type: "checkbox",
      class: "all-columns",
      checked: Boolean(this.allColumns),
      onchange: (ev) => {
        this.allColumns = ev.target.checked;
        this.loadStories();
      },
    });
    const controls = h("div", { class: "list-controls" }, search, h("label", { class: "inline small" }, every, " all metrics"));
    replace(this.storiesEl, h("p", { class: "muted", text: `Loading the stories of run ${run}…` }));
    try {
      const data = await api(withQuery(`/api/runs/${seg(run)}/stories`, { offset: this.offset, limit: PAGE, q }));
      if (stale()) return;
      this.storiesLoaded = true;
      const stories = data.stories || [];
      const columns = storyHeadline(this.runs.find((r) => r.name === run));
      const headlineColumn = (k) => columns.some(([, story]) => story === k);
      let keys = [];
      for (const s of stories) for (const k of Object.keys(s.metrics || {})) if (!keys.includes(k)) keys.push(k);
      // the headline first, then overall rates, then the per-kind splits, then raw counts
      const rank = (k) =>
        headlineColumn(k) ? -1 : (/(^|[._])(tp|fp|fn|count|missing|stories|links?_\w+)$|_(tp|fp|fn)_/.test(k) ? 2 : 0) + (/characters|objects/.test(k) ? 1 : 0);
      keys.sort((a, b) => rank(a) - rank(b));
      keys = keys.filter((k) => k !== "consistency.well_structured"); // the well-structured column says it
      if (!this.allColumns) keys = keys.filter(headlineColumn);
      const label = (k) => columns.find(([, story]) => story === k)?.[0] || k.replace(/_/g, " ");
      const body = h("tbody");
      for (const s of stories) {
        const m = s.metrics || {};
        // a story the teller failed on has no output: its error instead, under its id
        const verdict = s.failed
          ? h("span", { class: "badge bad", text: "failed" })
          : h("span", { class: `badge ${s.well_structured ? "ok" : "bad"}`, text: s.well_structured ? "yes" : "no" });
        body.appendChild(
          h(
            "tr",
            { class: `clickable${s.failed ? " failed" : ""}`, dataset: { story: s.story_id }, onclick: () => this.go([run, s.story_id]) },
            h(
              "td",
              { class: "story-id" },
              h("button", { type: "button", class: "link", text: s.story_id }),
              s.failed ? h("div", { class: "story-error", text: s.error || "failed (no error recorded)" }) : null,
            ),
            h("td", {}, verdict),
            keys.map((k) => h("td", { class: "num", text: formatNumber(m[k]) })),
          ),
        );
      }
      replace(
        this.storiesEl,
        h("h3", { text: `Stories in run ${run}` }, data.failed ? h("span", { class: "badge bad failed-count", text: `${data.failed} failed` }) : null),
        controls,
        stories.length ? null : h("p", { class: "empty", text: q ? "No story id matches." : "This run has no stories yet." }),
        h(
          "div",
          { class: "table-wrap card" },
          h("table", { class: "metrics-table" }, h("thead", {}, h("tr", {}, h("th", { text: "Story" }), h("th", { text: "Well-structured" }), keys.map((k) => h("th", { class: "num", title: k, text: label(k) })))), body),
        ),
        pager(data.total || 0, this.offset, (o) => this.go(this.parts, { q, offset: o })),
      );
      this.markShown();
      settlePager(this.storiesEl);
    } catch (err) {
      if (stale()) return;
      this.storiesLoaded = false;
      replace(this.storiesEl, alertBox(errorText(err)));
    }
  }

  /** Mark the row of the story shown (on this page of the list, if it is). */
  markShown() {
    for (const row of this.storiesEl.querySelectorAll("tr[data-story]")) row.classList.toggle("active", row.dataset.story === this.shownStory);
  }

  /** {dataset, split} of the reference for a run's story: the server says, when it has the run's dataset. */
  referenceOf(detail) {
    return detail && detail.reference && typeof detail.reference.dataset === "string" ? detail.reference : null;
  }

  /** Why a run's story has no frames: its dataset was not given to the studio (the manifest is only shown). */
  missingFrames(runName, detail) {
    if (detail.frames) return null;
    const run = (this.runs || []).find((r) => r.name === runName);
    const source = run && run.manifest && run.manifest.dataset ? run.manifest.dataset.source : null;
    const text =
      typeof source === "string" && source
        ? `No frames: run ${runName} was told from ${source}, which this studio was not started with; restart it with --dataset ${source} to see them.`
        : `No frames: run ${runName} does not say which dataset it was told from.`;
    return h("p", { class: "alert warn small missing-frames", text });
  }

  /** Bring the opened story to the top of the window (under the bar), above the fold whatever is above it. */
  reveal() {
    const bar = document.querySelector(".topbar");
    const top = this.detailEl.getBoundingClientRect().top + window.scrollY - (bar ? bar.getBoundingClientRect().height : 0) - 8;
    window.scrollTo({ top: Math.max(0, top), behavior: "instant" });
  }

  async openStory(run, storyId, other) {
    const token = (this.openToken = (this.openToken || 0) + 1);
    const stale = () => token !== this.openToken; // another story was asked for meanwhile
    this.shownKey = JSON.stringify([run, storyId, other]);
    this.shownStory = storyId;
    this.markShown();
    replace(this.detailEl, h("p", { class: "muted", text: `Loading ${storyId}…` }));
    let left;
    try {
      left = await api(storyPath(`/api/runs/${seg(run)}`, storyId));
    } catch (err) {
      if (!stale()) replace(this.detailEl, alertBox(errorText(err)));
      return;
    }
    if (stale()) return;
    const reference = this.referenceOf(left);
    const dataset = reference ? reference.dataset : null;
    // option values: "" (nothing), "reference" (the dataset's output) and "run:NAME" (":" is in no run's name)
    const choices = [h("option", { value: "", text: "nothing (this run alone)" })];
    if (dataset) choices.push(h("option", { value: "reference", text: `the reference (${dataset})`, selected: Boolean(other && other.reference) }));
    for (const r of this.runs || []) {
      if (r.name !== run) choices.push(h("option", { value: `run:${r.name}`, text: `run ${r.name}`, selected: Boolean(other && other.run === r.name) }));
    }
    const beside = (value) => (value === "reference" ? ["vs", "reference"] : value.startsWith("run:") ? ["vs", "run", value.slice(4)] : []);
    const select = h(
      "select",
      {
        id: "compare-with",
        "aria-label": "Compare with",
        onchange: (ev) => this.go([run, storyId, ...beside(ev.target.value)]),
      },
      choices,
    );
    const leftViewer = this.viewerFor(`${run} · ${storyId}`, left, reference);
    const head = h(
      "div",
      { class: "detail-head" },
      h("h3", { text: storyId }),
      h("span", { class: "spacer" }),
      h("label", { class: "inline", for: "compare-with" }, "Side by side with ", select),
    );
    const metrics = left.metrics && Object.keys(left.metrics).length ? this.storyMetrics(left.metrics, run) : null;
    const missing = this.missingFrames(run, left);
    if (!other) {
      replace(this.detailEl, head, metrics, missing, h("div", { class: "card" }, leftViewer.root));
      leftViewer.renderTelling(left.telling, left.raw || "", left.meta || null);
      this.reveal();
      return;
    }
    let right;
    let rightLabel;
    try {
      if (other.reference) {
        if (!dataset) throw new ApiError(`The dataset of run ${run} is not in this studio; start it with --dataset.`);
        right = await api(storyPath(`/api/datasets/${seg(dataset)}`, storyId, { split: reference.split }));
        rightLabel = `reference · ${dataset}`;
      } else {
        right = await api(storyPath(`/api/runs/${seg(other.run)}`, storyId));
        rightLabel = `run ${other.run}`;
      }
    } catch (err) {
      if (!stale()) replace(this.detailEl, head, alertBox(errorText(err)));
      return;
    }
    if (stale()) return;
    if (!right.frames && left.frames) right.frames = left.frames;
    if (!left.frames && right.frames) left.frames = right.frames;
    const rightViewer = this.viewerFor(`${rightLabel} · ${storyId}`, right, reference);
    leftViewer.setImages(frameImages(left.frames));
    replace(
      this.detailEl,
      head,
      metrics,
      left.frames ? null : missing,
      h(
        "div",
        { class: "compare" },
        h("div", { class: "card compare-side", dataset: { side: "left" } }, h("div", { class: "viewer-label", text: `run ${run}` }), leftViewer.root),
        h("div", { class: "card compare-side", dataset: { side: "right" } }, h("div", { class: "viewer-label", text: rightLabel }), rightViewer.root),
      ),
    );
    leftViewer.renderTelling(left.telling, left.raw || "", left.meta || null);
    rightViewer.renderTelling(right.telling, right.raw || "", right.meta || null);
    this.reveal();
  }

  viewerFor(title, detail, reference) {
    const viewer = new Viewer({
      title,
      exportSource: () => (reference ? { dataset: reference.dataset, split: reference.split, story_id: detail.story_id } : {}),
    });
    viewer.setImages(frameImages(detail.frames));
    return viewer;
  }

  /** A story's headline numbers, and every other number of its evaluation folded behind "all metrics". */
  storyMetrics(metrics, run) {
    const all = Object.entries(metrics).filter(([, v]) => v === null || typeof v !== "object");
    return h(
      "div",
      { class: "story-metrics card" },
      metricChips(storyEntries(metrics, storyHeadline((this.runs || []).find((r) => r.name === run))), "metrics headline"),
      allMetrics(all.length, metricChips(all)),
    );
  }
}
