// The Tell page: images, prompt and sampling settings, Generate and Cancel, the raw
// console and the progress (tokens for a model; images analysed and story parts written
// for the baseline, which has no tokens), and the viewer filling in as the story streams.
//
// The page remembers the job it follows (sessionStorage, per tab), so a reload reads the
// job's events again from the first and shows the story where it is; the server cancels a
// job no page reads for a while (API.md), so a closed tab does not keep telling.

import { api, ApiError, seg } from "./api.js";
import { h, clear, nearBottom } from "./dom.js";
import { Uploader } from "./uploader.js";
import { Viewer } from "./viewer.js";

const FOLLOWED = "storyreasoning.studio.tell"; // sessionStorage: {job, body, items, at, finished}
// The console writes a long line in blocks of this many characters, so a chunk lays out
// one short block again, never the whole line (300,000 characters on one line stay linear).
const CONSOLE_BLOCK = 4096;

const JOB_ID = /^j[0-9a-f]{24}$/;
const UPLOAD_ID = /^u[0-9a-f]{24}$/;

const isObject = (value) => Boolean(value) && typeof value === "object" && !Array.isArray(value);
const isNumberOrNone = (value) => value === null || value === undefined || (typeof value === "number" && Number.isFinite(value));
const isTextOrNone = (value) => value === null || value === undefined || typeof value === "string";

/** An uploaded image as the page keeps it, rebuilt from a stored one; null when it is not one. */
function savedItem(item) {
  if (!isObject(item) || typeof item.id !== "string" || !UPLOAD_ID.test(item.id)) return null;
  if (item.url !== `/api/uploads/${item.id}` || !isTextOrNone(item.name)) return null;
  if (!isNumberOrNone(item.width) || !isNumberOrNone(item.height) || !isNumberOrNone(item.bytes)) return null;
  return { id: item.id, url: item.url, name: item.name || item.id, width: item.width ?? null, height: item.height ?? null, bytes: item.bytes ?? null };
}

/**
 * The job this tab followed before a reload, or null. The entry is checked field by field
 * (another version of the studio, or anything else, may have written it): what is not
 * exactly what :meth:`TellPage.generate` stores is removed, never shown.
 */
function remembered() {
  let data;
  try {
    data = JSON.parse(sessionStorage.getItem(FOLLOWED) || "null");
  } catch {
    data = undefined; // storage off, or not JSON
  }
  if (data === null) return null;
  const valid = validEntry(data);
  if (!valid) remember(null);
  return valid;
}

function validEntry(data) {
  if (!isObject(data) || typeof data.job !== "string" || !JOB_ID.test(data.job)) return null;
  const body = data.body;
  if (!isObject(body) || !Array.isArray(body.images) || !body.images.length) return null;
  if (!isTextOrNone(body.prompt) || !isTextOrNone(body.system_prompt)) return null;
  for (const name of ["temperature", "top_p", "max_new_tokens", "seed"]) if (!isNumberOrNone(body[name])) return null;
  if (!Array.isArray(data.items) || data.items.length !== body.images.length) return null;
  const items = data.items.map(savedItem);
  if (items.some((item, i) => !item || item.id !== body.images[i])) return null;
  if (data.at !== undefined && !isNumberOrNone(data.at)) return null;
  const clean = {
    images: items.map((item) => item.id),
    prompt: body.prompt ?? null,
    system_prompt: body.system_prompt ?? null,
    temperature: body.temperature ?? null,
    top_p: body.top_p ?? null,
    max_new_tokens: body.max_new_tokens ?? null,
    seed: body.seed ?? null,
  };
  return { job: data.job, body: clean, items, at: data.at ?? null, finished: data.finished === true };
}

function remember(data) {
  try {
    if (data) sessionStorage.setItem(FOLLOWED, JSON.stringify(data));
    else sessionStorage.removeItem(FOLLOWED);
  } catch {
    // storage off or full: a reload then starts afresh
  }
}

/** Whether this tab was following a story still being told (the Tell page then re-attaches at start). */
export function followingStory() {
  const data = remembered();
  return Boolean(data && !data.finished);
}

/** A number field that cannot be sent as it is: the message goes next to it. */
class FieldError extends Error {
  constructor(field, message) {
    super(message);
    this.field = field;
  }
}

function numberField(label, name, { min, max, step, value, placeholder, help }) {
  const error = h("span", { class: "field-error", id: `tell-${name}-error`, hidden: true });
  const input = h("input", {
    type: "number",
    name,
    id: `tell-${name}`,
    min,
    max,
    step,
    placeholder: placeholder || "",
    value: value === null || value === undefined ? "" : String(value),
    "aria-describedby": error.id,
  });
  const field = h("label", { class: "field", for: `tell-${name}` }, h("span", { class: "field-label", text: label }), input, help ? h("span", { class: "field-help", text: help }) : null, error);
  return [input, field];
}

export class TellPage {
  constructor(root, config) {
    this.root = root;
    this.config = config;
    this.job = null;
    this.source = null;
    this.followed = null; // {job, body, items, at, finished}: what a reload shows again
    this.consolePending = [];
    this.consoleFrame = 0;
    this.build();
  }

  build() {
    const teller = this.config.teller;
    const sampling = this.config.sampling || {};
    this.uploader = new Uploader(this.config.limits, { onChange: () => this.updateButtons() });

    this.prompt = h("textarea", { id: "tell-prompt", rows: "3", placeholder: this.config.prompt || "Generate a story based on these images." });
    const limits = this.config.limits || {};
    this.bounds = { temperature: limits.max_temperature || 2, max_new_tokens: limits.max_new_tokens || 32768, seed: 4294967295 };
    const [temperature, tField] = numberField("Temperature", "temperature", { min: 0, max: this.bounds.temperature, step: 0.05, value: sampling.temperature });
    const [topP, pField] = numberField("Top-p", "top_p", { min: 0.01, max: 1, step: 0.01, value: sampling.top_p });
    const [maxTokens, mField] = numberField("Max tokens", "max_new_tokens", { min: 1, max: this.bounds.max_new_tokens, step: 1, value: sampling.max_new_tokens });
    const [seed, sField] = numberField("Seed", "seed", { min: 0, max: this.bounds.seed, step: 1, value: sampling.seed, placeholder: "random" });
    this.fields = { temperature, top_p: topP, max_new_tokens: maxTokens, seed };

    this.generateBtn = h("button", { type: "button", class: "btn primary", id: "generate", text: "Generate", onclick: () => this.generate() });
    this.cancelBtn = h("button", { type: "button", class: "btn", id: "cancel", text: "Cancel", disabled: true, onclick: () => this.cancel() });
    this.errorEl = h("div", { class: "alert error", role: "alert", hidden: true });
    this.progressBar = h("div", { class: "bar" });
    this.progressText = h("span", { class: "progress-text", text: "idle" });
    this.consoleEl = h("pre", { class: "console", "aria-label": "Raw output as it arrives" });

    const tellerLine = teller
      ? h(
          "p",
          { class: "teller-line" },
          h("span", { class: "muted", text: "Storyteller: " }),
          h("b", { text: teller.label || teller.model || teller.backend }),
          teller.baseline ? h("span", { class: "badge baseline", title: "no model weights: a computer-vision pipeline", text: "baseline" }) : null,
        )
      : h("p", { class: "alert warn", text: "The studio was started without a storyteller: Generate is off. Inspect and browse still work; start it with --teller to tell stories." });

    const setup = h(
      "div",
      { class: "setup" },
      h("div", { class: "card" }, h("h3", { text: "Images" }), this.uploader.root),
      h(
        "div",
        { class: "card" },
        h("h3", { text: "Prompt and sampling" }),
        tellerLine,
        teller && teller.baseline ? h("p", { class: "muted small", text: "The baseline ignores the prompt and the sampling settings." }) : null,
        h("label", { class: "field wide", for: "tell-prompt" }, h("span", { class: "field-label", text: "Prompt (optional)" }), this.prompt),
        h("div", { class: "grid-fields" }, tField, pField, mField, sField),
        h("div", { class: "actions" }, this.generateBtn, this.cancelBtn),
        this.errorEl,
      ),
      h(
        "div",
        { class: "card" },
        h(
          "div",
          { class: "card-head" },
          h("h3", { text: "Response console" }),
          h("span", { class: "spacer" }),
          h("button", { type: "button", class: "btn small ghost", text: "Clear", onclick: () => this.clearConsole() }),
        ),
        h("div", { class: "progress", role: "progressbar", "aria-label": teller && teller.baseline ? "images analysed and story parts written" : "tokens" }, this.progressBar),
        this.progressText,
        this.consoleEl,
      ),
    );

    this.viewer = new Viewer({
      title: "Your story",
      exportSource: () => (this.sent ? { images: this.sent.images, teller_label: this.config.teller ? this.config.teller.label : null } : null),
    });
    for (const [name, input] of Object.entries(this.fields)) input.addEventListener("input", () => this.fieldError(name, ""));
    clear(this.root);
    this.root.appendChild(h("div", { class: "two-col" }, setup, h("div", { class: "result" }, this.viewer.root)));
    this.updateButtons();
    this.resume();
  }

  enter() {}

  updateButtons() {
    this.holdFocus();
    const running = Boolean(this.job);
    this.generateBtn.disabled = running || !this.config.teller || !this.uploader.items.length || this.uploader.busy > 0;
    this.cancelBtn.disabled = !running || Boolean(this.cancelWanted);
    this.passFocus();
  }

  /**
   * A disabled button loses the focus to the page's start, so a keyboard user who pressed
   * Generate (or Cancel) would Tab through the whole page again: the focus goes from the
   * one disabled to the other once that is enabled (Cancel while telling, Generate after).
   */
  holdFocus() {
    const at = document.activeElement;
    if (at === this.generateBtn || at === this.cancelBtn) this.focusWanted = true;
  }

  passFocus() {
    if (!this.focusWanted) return;
    const at = document.activeElement;
    if (at && at !== document.body && at !== this.generateBtn && at !== this.cancelBtn) {
      this.focusWanted = false; // the user went on elsewhere
      return;
    }
    const to = [this.generateBtn, this.cancelBtn].find((button) => !button.disabled);
    if (!to) return; // both off (cancelling): the next change passes it on
    this.focusWanted = false;
    if (at !== to) to.focus();
  }

  showError(text) {
    this.errorEl.textContent = text || "";
    this.errorEl.hidden = !text;
  }

  /** Show (or, with "", clear) why a number field cannot be sent, next to the field. */
  fieldError(name, text) {
    const input = this.fields[name];
    const error = input.closest("label").querySelector(".field-error");
    error.textContent = text;
    error.hidden = !text;
    if (text) input.setAttribute("aria-invalid", "true");
    else input.removeAttribute("aria-invalid");
  }

  /**
   * A number field's value (null when empty: the default). What the browser could not read
   * as a number ("-", "1e", "1,5") leaves the field's value empty and sets validity.badInput:
   * that is refused, never sent as the default.
   */
  readNumber(name, { integer = false, low, high, above = false, example } = {}) {
    const input = this.fields[name];
    const label = input.closest("label").querySelector(".field-label").textContent;
    const kind = integer ? "a whole number" : "a number";
    const range = above ? `above ${low} and at most ${high}` : `from ${low} to ${high}`;
    const fallback = (this.config.sampling || {})[name];
    const reset = fallback === null || fallback === undefined ? "clear it for a random one" : `clear it for the default (${fallback})`;
    if (input.validity.badInput) {
      throw new FieldError(name, `${label} is not ${kind}: type ${kind} ${range}${example ? ` (e.g. ${example})` : ""}, or ${reset}.`);
    }
    const raw = input.value.trim();
    if (raw === "") return null;
    const value = Number(raw);
    if (!Number.isFinite(value) || (integer && !Number.isInteger(value))) {
      throw new FieldError(name, `${label} must be ${kind}, not "${raw}".`);
    }
    if (value > high || (above ? value <= low : value < low)) throw new FieldError(name, `${label} must be ${range}, not ${raw}.`);
    return value;
  }

  body() {
    const s = this.config.sampling || {};
    const b = this.bounds;
    const temperature = this.readNumber("temperature", { low: 0, high: b.temperature, example: "0.7" });
    const topP = this.readNumber("top_p", { low: 0, high: 1, above: true, example: "0.9" });
    const maxTokens = this.readNumber("max_new_tokens", { integer: true, low: 1, high: b.max_new_tokens });
    const seed = this.readNumber("seed", { integer: true, low: 0, high: b.seed });
    const prompt = this.prompt.value.trim();
    return {
      images: this.uploader.items.map((item) => item.id),
      prompt: prompt || null,
      system_prompt: null,
      temperature: temperature ?? s.temperature,
      top_p: topP ?? s.top_p,
      max_new_tokens: maxTokens ?? s.max_new_tokens,
      seed,
    };
  }

  async generate() {
    this.showError("");
    for (const name of Object.keys(this.fields)) this.fieldError(name, "");
    let body;
    try {
      body = this.body();
    } catch (err) {
      if (!(err instanceof FieldError)) throw err;
      this.fieldError(err.field, err.message);
      this.fields[err.field].focus();
      return;
    }
    const items = this.uploader.items.slice();
    this.followed = null; // the story shown before is cleared: a reload must not bring it back
    remember(null);
    this.prepare(body, items);
    this.setProgress(0, "starting…");
    this.cancelWanted = false;
    this.job = "starting";
    this.updateButtons();
    let job;
    try {
      job = (await api("/api/tell", { json: body })).job;
    } catch (err) {
      this.job = null;
      this.cancelWanted = false;
      this.updateButtons();
      this.setProgress(0, "failed");
      this.viewer.setMessage("");
      this.showError(err instanceof ApiError ? err.message : String(err));
      return;
    }
    this.job = job;
    this.followed = { job, body, items, at: Date.now(), finished: false };
    remember(this.followed);
    this.listen(job);
    if (this.cancelWanted) {
      this.cancelWanted = false;
      this.cancel();
    }
  }

  /** Clear the viewer and the console for the story of ``body`` told from ``items``. */
  prepare(body, items) {
    this.sent = body;
    this.sentItems = items;
    this.runs = (this.runs || 0) + 1;
    this.maxTokens = body.max_new_tokens || 0;
    this.viewer.setImages(items);
    this.viewer.setTitle(`Story of ${body.images.length} image${body.images.length === 1 ? "" : "s"}`);
    this.viewer.startStream();
    this.clearConsole();
    this.started = performance.now();
    this.tokens = 0;
    this.steps = { images: body.images.length, analysed: 0, written: 0, chars: 0 };
  }

  /** After a reload: show the remembered job again, its events read from the first. */
  resume() {
    const saved = remembered();
    if (!saved || !this.config.teller) return;
    try {
      this.uploader.setItems(saved.items);
      this.restoreFields(saved.body);
      this.prepare(saved.body, saved.items);
      if (Number.isFinite(saved.at)) this.started = performance.now() - Math.max(0, Date.now() - saved.at); // for the rate
      this.setProgress(0, saved.finished ? "loading…" : "reconnecting…");
      this.job = saved.job;
      this.followed = saved;
      this.updateButtons();
      this.listen(saved.job, true);
    } catch (err) {
      // whatever the entry held, the page must work: forget it and start afresh
      console.warn("the story this tab followed could not be shown again:", err);
      remember(null);
      this.followed = null;
      if (this.source) this.source.close();
      this.source = null;
      this.job = null;
      this.uploader.setItems([]);
      this.viewer.reset();
      this.setProgress(0, "idle");
      this.updateButtons();
    }
  }

  /** Put the prompt and the sampling settings of a story sent before back in their fields. */
  restoreFields(body) {
    this.prompt.value = typeof body.prompt === "string" ? body.prompt : "";
    for (const [name, input] of Object.entries(this.fields)) {
      const value = body[name];
      input.value = typeof value === "number" && Number.isFinite(value) ? String(value) : "";
    }
  }

  /** The job followed before a reload is gone: say so, and drop the images the server lost too. */
  async forgotten(finished) {
    const items = this.uploader.items.slice();
    const lost = [];
    await Promise.all(
      items.map(async (item) => {
        try {
          const response = await fetch(item.url, { cache: "no-store" });
          if (response.status === 404) lost.push(item);
        } catch {
          // the server did not answer: the images stay, Generate says what is wrong
        }
      }),
    );
    let text = "The story this page was following is no longer on the studio server (it was restarted, or the story ended more than a few minutes ago); ";
    if (lost.length) {
      const same = this.uploader.items.length === items.length && this.uploader.items.every((item, i) => item === items[i]);
      if (same) this.uploader.setItems(items.filter((item) => !lost.includes(item)));
      const which = lost.length === items.length ? "its images are" : `${lost.length} of its ${items.length} images are`;
      text += `${which} gone from the server too: upload them again, then generate.`;
    } else {
      text += "generate it again.";
    }
    if (this.job || this.followed) return; // another story started meanwhile
    if (finished) this.viewer.setMessage(text, "warn");
    else this.showError(text);
  }

  listen(job, resumed = false) {
    const source = new EventSource(`/api/tell/${seg(job)}/events`);
    this.source = source;
    let heard = false;
    source.onmessage = (message) => {
      if (this.source !== source) return;
      heard = true;
      let event;
      try {
        event = JSON.parse(message.data);
      } catch {
        return; // not one of ours; the stream goes on
      }
      this.handle(event);
    };
    let retries = 0;
    source.onopen = () => {
      retries = 0;
    };
    source.onerror = () => {
      if (this.source !== source) return;
      // The browser reconnects by itself and the server resumes after the last event id
      // it saw, so a short break loses nothing; a refused or repeatedly failing stream ends here.
      retries += 1;
      if (source.readyState === EventSource.CONNECTING && retries <= 3) return;
      const finished = this.followed && this.followed.finished;
      this.finish();
      if (resumed && !heard) {
        // refused at once: the server no longer has the job (it restarted, or forgot a finished one)
        remember(null);
        this.followed = null;
        this.viewer.reset();
        this.setProgress(0, "idle");
        this.forgotten(finished);
        return;
      }
      this.showError("The connection to the studio server was lost before the story finished; check that the server is running and try again.");
      this.setProgress(null, "connection lost");
    };
  }

  /** The story followed has its final event: a reload shows it again (as long as the server keeps it). */
  ended() {
    if (!this.followed) return;
    this.followed.finished = true;
    remember(this.followed);
  }

  handle(event) {
    switch (event.event) {
      case "chunk": {
        this.writeConsole(event.text || "");
        this.tokens = event.tokens || this.tokens + 1;
        if (this.steps) this.steps.chars += (event.text || "").length;
        if (!this.baseline()) this.setProgress(this.tokens);
        break;
      }
      case "done": {
        this.finish();
        this.ended();
        const meta = event.meta || {};
        this.viewer.renderTelling(event.telling, event.raw || "", meta);
        // the server's own clock: the same after a reload that read the events again
        const usage = meta.usage || {};
        const seconds = typeof usage.seconds === "number" ? usage.seconds : (performance.now() - this.started) / 1000;
        this.setProgress(this.tokens, `done · ${this.doneText(meta)} in ${seconds.toFixed(1)} s`, true);
        break;
      }
      case "error": {
        this.finish();
        this.ended();
        this.showError(event.message || "The storyteller failed without a message.");
        this.setProgress(this.tokens, "failed");
        const stopped = "The storyteller stopped with an error";
        this.settlePartial(event.partial, `${stopped}; what arrived before it is shown.`, "error", `${stopped} before it wrote anything.`);
        break;
      }
      case "cancelled": {
        this.finish();
        this.ended();
        this.setProgress(this.tokens, `cancelled after ${this.stepText()}`);
        const why = event.reason ? `Cancelled: ${event.reason}.` : "Cancelled.";
        this.settlePartial(event.partial, `${why} What arrived before is shown.`, "warn", `${why} Nothing had arrived.`);
        break;
      }
      default:
        this.viewer.applyEvent(event);
        if (this.baseline() && this.steps && (event.event === "image_section_started" || event.event === "segment_closed")) {
          if (event.event === "image_section_started") this.steps.analysed += 1;
          else this.steps.written += 1;
          this.setProgress(this.tokens);
        }
    }
  }

  /** Whether the storyteller is the baseline: a vision pipeline with no tokens, counted in images. */
  baseline() {
    return Boolean(this.config.teller && this.config.teller.baseline);
  }

  /** How far the story got: tokens for a model; images analysed and story parts written for the baseline. */
  stepText() {
    if (!this.baseline() || !this.steps) return `${this.tokens} tokens`;
    const { images, analysed, written } = this.steps;
    if (!written) return `${Math.min(analysed, images)} of ${images} image${images === 1 ? "" : "s"} analysed`;
    return `${images} image${images === 1 ? "" : "s"} analysed, ${Math.min(written, images)} of ${images} story parts written`;
  }

  /** What a finished story took: the model's own token count when it gave one, else what the baseline did. */
  doneText(meta) {
    const usage = (meta && meta.usage) || {};
    if (!this.baseline()) return `${usage.completion_tokens || this.tokens} tokens`;
    const { images, chars } = this.steps || { images: 0, chars: 0 };
    return `${images} image${images === 1 ? "" : "s"} analysed, ${chars.toLocaleString("en")} characters written`;
  }

  /**
   * After an error or a cancel: show the exact parse of what arrived (raw text, findings), and
   * why it stopped (``message``; ``none`` when nothing had arrived: nothing is shown then).
   */
  async settlePartial(partial, message, kind, none) {
    const run = this.runs;
    const empty = !partial || !partial.trim();
    this.viewer.setMessage(empty ? none : message, kind);
    if (empty) return;
    try {
      const sizes = (this.sentItems || []).map((item) => [item.width, item.height]);
      const data = await api("/api/parse", { json: { text: partial, image_sizes: sizes.length ? sizes : null } });
      if (run !== this.runs) return; // another story started meanwhile
      this.viewer.renderTelling(data.telling, data.raw ?? partial, null);
      this.viewer.setMessage(message, kind);
    } catch {
      // the streamed view stays as it is
    }
  }

  /**
   * Queue raw text for the console. It is written once per animation frame, however many
   * chunks arrived meanwhile, and where the console is scrolled is read once then too.
   */
  writeConsole(text) {
    if (!text) return;
    this.consolePending.push(text);
    if (!this.consoleFrame) this.consoleFrame = requestAnimationFrame(() => this.flushConsole());
  }

  /**
   * Write the queued text: Text nodes appended to a block per line (a line longer than
   * CONSOLE_BLOCK goes on in a new block), so the work is the new text's, not the line's.
   */
  flushConsole() {
    if (this.consoleFrame) cancelAnimationFrame(this.consoleFrame);
    this.consoleFrame = 0;
    const text = this.consolePending.join("");
    this.consolePending = [];
    if (!text) return;
    const stick = nearBottom(this.consoleEl);
    text.split("\n").forEach((line, i) => {
      if (i > 0 || !this.consoleLine) this.consoleBlock("cl");
      while (line) {
        if (this.consoleUsed >= CONSOLE_BLOCK) this.consoleBlock("cl more");
        const piece = line.slice(0, CONSOLE_BLOCK - this.consoleUsed);
        this.consoleLine.appendChild(document.createTextNode(piece));
        this.consoleUsed += piece.length;
        line = line.slice(piece.length);
      }
    });
    if (stick) this.consoleEl.scrollTop = this.consoleEl.scrollHeight;
  }

  consoleBlock(className) {
    this.consoleLine = h("div", { class: className });
    this.consoleUsed = 0;
    this.consoleEl.appendChild(this.consoleLine);
  }

  clearConsole() {
    if (this.consoleFrame) cancelAnimationFrame(this.consoleFrame);
    this.consoleFrame = 0;
    this.consolePending = [];
    clear(this.consoleEl);
    this.consoleLine = null;
    this.consoleUsed = 0;
  }

  finish() {
    this.flushConsole();
    if (this.source) this.source.close();
    this.source = null;
    this.job = null;
    clearTimeout(this.cancelTimer);
    this.viewer.statusEl.classList.remove("busy");
    if (this.viewer.statusEl.textContent === "streaming…") this.viewer.statusEl.textContent = "";
    this.updateButtons();
  }

  async cancel() {
    const job = this.job;
    if (!job) return;
    this.holdFocus();
    this.cancelBtn.disabled = true;
    if (job === "starting") {
      // the job has no id yet: cancel it as soon as the server gives one (generate)
      this.cancelWanted = true;
      this.setProgress(0, "cancelling…");
      return;
    }
    this.setProgress(this.tokens, "cancelling…");
    try {
      await api(`/api/tell/${seg(job)}/cancel`, { method: "POST" });
    } catch (err) {
      this.showError(err instanceof ApiError ? err.message : String(err));
    }
    // the stream ends with a "cancelled" event; if it never comes, stop listening anyway
    this.cancelTimer = setTimeout(() => {
      if (this.job === job) {
        this.finish();
        this.ended();
        this.setProgress(this.tokens, "cancelled");
      }
    }, 5000);
  }

  setProgress(tokens, text, complete = false) {
    const bar = this.progressBar;
    const counted = this.baseline() && this.steps; // images analysed and parts written: 2 steps per image
    const done = counted ? this.steps.analysed + this.steps.written : tokens;
    const total = counted ? 2 * this.steps.images : this.maxTokens;
    if (tokens === null) {
      bar.classList.remove("running");
    } else {
      const frac = complete ? 1 : total ? Math.min(1, done / total) : 0;
      bar.style.width = `${(frac * 100).toFixed(1)}%`;
      bar.classList.toggle("running", Boolean(this.job) && !complete);
      bar.parentElement.setAttribute("aria-valuenow", String(done));
    }
    if (text) this.progressText.textContent = text;
    else if (counted) this.progressText.textContent = this.stepText();
    else if (tokens !== null) {
      const seconds = (performance.now() - this.started) / 1000;
      const rate = seconds > 0 ? ` · ${(tokens / seconds).toFixed(1)} tokens/s` : "";
      this.progressText.textContent = `${tokens} / ${this.maxTokens} tokens${rate}`;
    }
  }
}
