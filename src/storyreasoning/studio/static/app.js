// StoryReasoning Studio: a one-page app with four pages (Tell, Inspect, Datasets,
// Runs) behind hash routes (#tell, #inspect, #datasets/NAME/STORY?split=SPLIT,
// #runs/RUN/STORY/vs/run/OTHER and #runs/RUN/STORY/vs/reference; a list's page and search
// as ?offset=50&q=WORD). Each part of a route is percent-encoded; what follows "?" is a query
// (URLSearchParams).

import { api, ApiError } from "./api.js";
import { h, replace } from "./dom.js";
import { TellPage, followingStory } from "./tell.js";
import { InspectPage } from "./inspect.js";
import { DatasetsPage, RunsPage } from "./browse.js";

const PAGES = [
  ["tell", "Tell", TellPage],
  ["inspect", "Inspect", InspectPage],
  ["datasets", "Datasets", DatasetsPage],
  ["runs", "Runs", RunsPage],
];

class Router {
  constructor(app) {
    this.app = app;
  }

  /** Go to a route given as parts and a query: ["datasets", "two", "story-1"], {split: "test"}. */
  go(parts, query = {}) {
    const params = new URLSearchParams();
    for (const [key, value] of Object.entries(query || {})) {
      if (value !== null && value !== undefined && value !== "") params.set(key, String(value));
    }
    const search = params.toString();
    const hash = `#${parts.map((p) => encodeURIComponent(p)).join("/")}${search ? `?${search}` : ""}`;
    if (location.hash === hash) this.app.route();
    else location.hash = hash;
  }

  /** The route's path and query, as written after "#". */
  pieces() {
    const raw = location.hash.replace(/^#\/?/, "");
    const at = raw.indexOf("?"); // a "?" in a part is percent-encoded, so the first one starts the query
    return at < 0 ? [raw, ""] : [raw.slice(0, at), raw.slice(at + 1)];
  }

  query() {
    return new URLSearchParams(this.pieces()[1]);
  }

  parts() {
    const raw = this.pieces()[0];
    if (!raw) return [];
    return raw.split("/").map((p) => {
      try {
        return decodeURIComponent(p);
      } catch {
        return p;
      }
    });
  }
}

class App {
  constructor(root) {
    this.root = root;
    this.router = new Router(this);
    this.pages = {};
    this.sections = {};
    this.navLinks = {};
  }

  async start() {
    try {
      this.config = await api("/api/config");
    } catch (err) {
      replace(this.root, h("div", { class: "alert error fatal", text: err instanceof ApiError ? err.message : String(err) }));
      return;
    }
    this.build();
    window.addEventListener("hashchange", () => this.route());
    // a reload while a story was being told: the Tell page follows it again, whichever page is shown
    if (this.config.teller && followingStory()) this.page("tell");
    this.route();
  }

  build() {
    const nav = h("nav", { class: "nav", "aria-label": "Pages" });
    for (const [key, label] of PAGES) {
      if (key === "runs" && this.config.runs === false) continue;
      const link = h("a", { href: `#${key}`, class: "nav-link", dataset: { page: key }, text: label });
      this.navLinks[key] = link;
      nav.appendChild(link);
    }
    const teller = this.config.teller;
    const badge = teller
      ? h(
          "span",
          { class: "teller-chip", title: `Storyteller: ${teller.label || teller.model || teller.backend}` },
          h("span", { class: "dot" }),
          h("span", { class: "teller-name", text: teller.label || teller.model || teller.backend }),
          teller.baseline ? h("span", { class: "badge baseline", text: "baseline" }) : null,
        )
      : h("span", { class: "teller-chip off", text: "no storyteller" });
    const header = h(
      "header",
      { class: "topbar" },
      h("a", { class: "brand", href: "#tell" }, h("span", { class: "logo", "aria-hidden": "true" }), h("span", { text: "StoryReasoning" }), h("span", { class: "brand-sub", text: "Studio" })),
      nav,
      h("span", { class: "spacer" }),
      badge,
      h("span", { class: "version", text: this.config.version ? `v${this.config.version}` : "" }),
    );
    const main = h("main", { class: "pages" });
    for (const [key] of PAGES) {
      const section = h("section", { class: `page page-${key}`, id: `page-${key}`, hidden: true });
      this.sections[key] = section;
      main.appendChild(section);
    }
    replace(this.root, header, main);
  }

  page(key) {
    if (!this.pages[key]) {
      const [, , Page] = PAGES.find(([k]) => k === key);
      this.pages[key] = new Page(this.sections[key], this.config, this.router);
    }
    return this.pages[key];
  }

  route() {
    const parts = this.router.parts();
    let key = parts[0] || "tell";
    if (!this.sections[key] || !this.navLinks[key]) key = "tell";
    for (const [k, section] of Object.entries(this.sections)) section.hidden = k !== key;
    for (const [k, link] of Object.entries(this.navLinks)) {
      link.classList.toggle("active", k === key);
      if (k === key) link.setAttribute("aria-current", "page");
      else link.removeAttribute("aria-current");
    }
    const label = PAGES.find(([k]) => k === key)[1];
    document.title = `${label} · StoryReasoning Studio`;
    const page = this.page(key);
    Promise.resolve(page.enter(parts.slice(1), this.router.query())).catch((err) => {
      this.sections[key].prepend(h("div", { class: "alert error", role: "alert", text: String(err && err.message ? err.message : err) }));
    });
  }
}

const app = new App(document.getElementById("app"));
window.studio = app; // for the browser console and the tests
app.start();
