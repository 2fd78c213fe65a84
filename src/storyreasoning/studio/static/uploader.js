// Image upload with checks, and a list the user reorders by drag and drop (or with the
// keyboard: the up and down buttons). Used by the Tell and Inspect pages.

import { api, ApiError } from "./api.js";
import { h, clear, formatBytes } from "./dom.js";

const DEFAULT_LIMITS = {
  max_images: 20,
  max_image_bytes: 20 * 1024 * 1024,
  types: ["image/jpeg", "image/png", "image/webp", "image/gif"],
};

function typeNames(types) {
  return types.map((t) => t.replace(/^image\//, "").toUpperCase()).join(", ");
}

export class Uploader {
  /** options.onChange(items) after every change; options.hint: text under the drop zone. */
  constructor(limits, options = {}) {
    this.limits = { ...DEFAULT_LIMITS, ...(limits || {}) };
    this.options = options;
    this.items = []; // [{id, name, width, height, bytes, url}]
    this.busy = 0;
    this.dragFrom = null;
    this.build();
    this.render();
  }

  build() {
    this.input = h("input", {
      type: "file",
      multiple: true,
      accept: this.limits.types.join(","),
      class: "file-input",
      "aria-label": "Choose images",
      onchange: () => {
        const files = Array.from(this.input.files || []);
        this.input.value = "";
        this.add(files);
      },
    });
    this.zone = h(
      "label",
      { class: "dropzone" },
      this.input,
      h("span", { class: "dz-icon", "aria-hidden": "true" }),
      h("span", { class: "dz-main", text: "Drop images here or click to choose" }),
      h("span", {
        class: "dz-hint",
        text: `${typeNames(this.limits.types)} · up to ${formatBytes(this.limits.max_image_bytes)} each · at most ${this.limits.max_images}`,
      }),
    );
    for (const name of ["dragenter", "dragover"]) {
      this.zone.addEventListener(name, (ev) => {
        if (!Array.from(ev.dataTransfer.types || []).includes("Files")) return;
        ev.preventDefault();
        this.zone.classList.add("over");
      });
    }
    this.zone.addEventListener("dragleave", () => this.zone.classList.remove("over"));
    this.zone.addEventListener("drop", (ev) => {
      if (!ev.dataTransfer.files || !ev.dataTransfer.files.length) return;
      ev.preventDefault();
      this.zone.classList.remove("over");
      this.add(Array.from(ev.dataTransfer.files));
    });
    this.messages = h("ul", { class: "messages", "aria-live": "polite" });
    this.list = h("ol", { class: "image-list", "aria-label": "Images in story order" });
    this.countEl = h("span", { class: "muted small" });
    this.clearBtn = h("button", {
      type: "button",
      class: "btn small ghost",
      text: "Remove all",
      onclick: () => {
        this.items = [];
        this.render();
        this.changed();
      },
    });
    this.root = h(
      "div",
      { class: "uploader" },
      this.zone,
      this.messages,
      h("div", { class: "list-head" }, this.countEl, h("span", { class: "spacer" }), this.clearBtn),
      this.list,
    );
  }

  /** Check files here first, then upload them one by one (the server checks their content). */
  async add(files) {
    clear(this.messages);
    const accepted = [];
    for (const file of files) {
      const room = this.limits.max_images - this.items.length - accepted.length;
      if (room <= 0) {
        this.reject(file.name, `not added: a story takes at most ${this.limits.max_images} images.`);
        continue;
      }
      if (!this.limits.types.includes(file.type)) {
        const what = file.type ? `a ${file.type} file` : "not recognised as an image";
        this.reject(file.name, `is ${what}; choose ${typeNames(this.limits.types)} images.`);
        continue;
      }
      if (file.size > this.limits.max_image_bytes) {
        this.reject(file.name, `is ${formatBytes(file.size)}; the limit is ${formatBytes(this.limits.max_image_bytes)} per image.`);
        continue;
      }
      if (file.size === 0) {
        this.reject(file.name, "is empty.");
        continue;
      }
      accepted.push(file);
    }
    for (const file of accepted) {
      this.busy += 1;
      this.renderCount();
      try {
        const form = new FormData();
        form.append("files", file, file.name);
        const data = await api("/api/uploads", { body: form });
        for (const image of data.images || []) this.items.push({ ...image, name: image.name || file.name });
        this.render();
      } catch (err) {
        this.reject(file.name, err instanceof ApiError ? err.message : String(err), true);
      } finally {
        this.busy -= 1;
        this.renderCount();
        this.changed();
      }
    }
  }

  reject(name, message, fromServer = false) {
    this.messages.appendChild(
      h("li", { class: `message error${fromServer ? " server" : ""}` }, h("b", { class: "file-name", text: name }), " ", fromServer ? "was rejected: " : "", message),
    );
  }

  changed() {
    if (this.options.onChange) this.options.onChange(this.items.slice());
  }

  move(from, to) {
    if (from === to || from < 0 || to < 0 || from >= this.items.length || to >= this.items.length) return;
    const [item] = this.items.splice(from, 1);
    this.items.splice(to, 0, item);
    this.render();
    this.changed();
  }

  remove(index) {
    this.items.splice(index, 1);
    this.render();
    this.changed();
  }

  setItems(items) {
    this.items = items.slice();
    this.render();
    this.changed();
  }

  renderCount() {
    const n = this.items.length;
    this.countEl.textContent = this.busy ? `uploading ${this.busy}…` : n ? `${n} image${n === 1 ? "" : "s"}, in story order` : "";
    this.clearBtn.hidden = !n;
    this.countEl.parentElement.hidden = !n && !this.busy;
  }

  render() {
    clear(this.list);
    this.items.forEach((item, i) => {
      const up = h("button", {
        type: "button",
        class: "icon-btn up",
        title: "Move earlier",
        "aria-label": `Move image ${i + 1} earlier`,
        disabled: i === 0,
        onclick: () => {
          this.move(i, i - 1);
          this.focusButton(i - 1, "up");
        },
      });
      const down = h("button", {
        type: "button",
        class: "icon-btn down",
        title: "Move later",
        "aria-label": `Move image ${i + 1} later`,
        disabled: i === this.items.length - 1,
        onclick: () => {
          this.move(i, i + 1);
          this.focusButton(i + 1, "down");
        },
      });
      const remove = h("button", {
        type: "button",
        class: "icon-btn remove",
        title: "Remove",
        "aria-label": `Remove image ${i + 1}`,
        onclick: () => this.remove(i),
      });
      const li = h(
        "li",
        { class: "image-item", draggable: "true", dataset: { index: String(i), id: item.id } },
        h("span", { class: "grip", "aria-hidden": "true", title: "Drag to reorder" }),
        h("img", { class: "thumb", src: item.url, alt: "", draggable: "false" }),
        h(
          "span",
          { class: "item-text" },
          h("span", { class: "item-label", text: `Image ${i + 1}` }),
          h("span", { class: "item-name", text: item.name || "" }),
          h("span", { class: "item-meta", text: `${item.width}×${item.height} · ${formatBytes(item.bytes)}` }),
        ),
        h("span", { class: "item-actions" }, up, down, remove),
      );
      li.addEventListener("dragstart", (ev) => {
        this.dragFrom = i;
        li.classList.add("dragging");
        ev.dataTransfer.effectAllowed = "move";
        ev.dataTransfer.setData("text/plain", String(i));
      });
      li.addEventListener("dragend", () => {
        this.dragFrom = null;
        li.classList.remove("dragging");
        for (const el of this.list.children) el.classList.remove("drop-target");
      });
      li.addEventListener("dragover", (ev) => {
        if (this.dragFrom === null) return;
        ev.preventDefault();
        ev.dataTransfer.dropEffect = "move";
        li.classList.add("drop-target");
      });
      li.addEventListener("dragleave", () => li.classList.remove("drop-target"));
      li.addEventListener("drop", (ev) => {
        if (this.dragFrom === null) return;
        ev.preventDefault();
        const from = this.dragFrom;
        this.dragFrom = null;
        // the dragged image takes the place of the one it is dropped on
        this.move(from, i);
      });
      this.list.appendChild(li);
    });
    this.renderCount();
  }

  focusButton(index, which) {
    const li = this.list.children[index];
    const btn = li && li.querySelector(`.icon-btn.${which}`);
    if (btn && !btn.disabled) btn.focus();
    else if (li) li.querySelector(".icon-btn:not([disabled])")?.focus();
  }
}
