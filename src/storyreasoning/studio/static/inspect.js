// The Inspect page: paste or load a model output (and optionally its images) and view it
// without generating anything. The server parses it (POST /api/parse).

import { api, ApiError } from "./api.js";
import { h, clear } from "./dom.js";
import { Uploader } from "./uploader.js";
import { Viewer } from "./viewer.js";

const MAX_TEXT_BYTES = 16 * 1024 * 1024;

export class InspectPage {
  constructor(root, config) {
    this.root = root;
    this.config = config;
    this.build();
  }

  build() {
    this.text = h("textarea", {
      id: "inspect-text",
      rows: "14",
      spellcheck: "false",
      placeholder: "<think>\n## Image 1\n\n### Characters\n| Character ID | Name | … |\n…\n</think>\n<gdi image1>…</gdi>",
    });
    this.fileInput = h("input", {
      type: "file",
      id: "inspect-file",
      accept: ".txt,.md,.markdown,text/plain,text/markdown",
      class: "file-input",
      onchange: () => this.loadFile(),
    });
    this.fileName = h("span", { class: "muted small" });
    this.loaded = null; // {name, text} of the file loaded, while the text is still the file's
    this.text.addEventListener("input", () => {
      // edited or replaced: the text is no longer the file's, so it no longer takes its name
      if (this.loaded && this.text.value !== this.loaded.text) {
        this.loaded = null;
        this.fileName.textContent = "";
      }
    });
    this.uploader = new Uploader(this.config.limits);
    this.viewBtn = h("button", { type: "button", class: "btn primary", id: "inspect-view", text: "View", onclick: () => this.view() });
    this.errorEl = h("div", { class: "alert error", role: "alert", hidden: true });
    this.viewer = new Viewer({
      title: "Inspected output",
      exportSource: () => (this.images ? { images: this.images } : {}),
    });
    const setup = h(
      "div",
      { class: "setup" },
      h(
        "div",
        { class: "card" },
        h("h3", { text: "Output" }),
        h("p", { class: "muted small", text: "Paste a model output (chain-of-thought and story), or load it from a text file." }),
        h("div", { class: "file-row" }, h("label", { class: "btn small", for: "inspect-file" }, "Load .txt file", this.fileInput), this.fileName),
        this.text,
        h("div", { class: "actions" }, this.viewBtn, h("span", { class: "muted small", text: "Add the story's images below to see its boxes." })),
        this.errorEl,
      ),
      h("div", { class: "card" }, h("h3", { text: "Images (optional)" }), this.uploader.root),
    );
    clear(this.root);
    this.root.appendChild(h("div", { class: "two-col" }, setup, h("div", { class: "result" }, this.viewer.root)));
  }

  enter() {}

  showError(text) {
    this.errorEl.textContent = text || "";
    this.errorEl.hidden = !text;
  }

  async loadFile() {
    const file = this.fileInput.files && this.fileInput.files[0];
    this.fileInput.value = "";
    if (!file) return;
    this.showError("");
    if (file.size > MAX_TEXT_BYTES) {
      this.showError(`${file.name} is too large (${Math.round(file.size / 1048576)} MB); an output is at most 16 MB.`);
      return;
    }
    try {
      this.text.value = await file.text(); // a textarea's value is text, never markup
      this.loaded = { name: file.name, text: this.text.value };
      this.fileName.textContent = file.name;
    } catch (err) {
      this.showError(`${file.name} could not be read (${err.message}).`);
    }
  }

  async view() {
    this.showError("");
    const text = this.text.value;
    if (!text.trim()) {
      this.showError("Paste an output or load a .txt file first.");
      return;
    }
    const items = this.uploader.items;
    this.viewBtn.disabled = true;
    try {
      const data = await api("/api/parse", { json: { text, image_sizes: items.length ? items.map((i) => [i.width, i.height]) : null } });
      this.images = items.length ? items.map((i) => i.id) : null;
      this.viewer.setImages(items);
      // the title (and the export's file name) is the file's only while the text is the file's
      const named = this.loaded && this.loaded.text === text;
      this.viewer.setTitle(named ? this.loaded.name : "Inspected output");
      this.viewer.renderTelling(data.telling, data.raw ?? text, null);
    } catch (err) {
      this.showError(err instanceof ApiError ? err.message : String(err));
    } finally {
      this.viewBtn.disabled = false;
    }
  }
}
