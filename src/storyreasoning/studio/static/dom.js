// Building DOM nodes without ever parsing text as HTML.
//
// Every piece of text that reaches the page (model output, file names, server
// messages) goes through textContent or a Text node. Nothing here, nor anywhere else in
// the studio's scripts, assigns innerHTML / outerHTML or calls insertAdjacentHTML.

// URLs the page may point at: its own paths and fragments, and blob: downloads.
const SAFE_URL = /^(\/(?!\/)|#|blob:)/;

/**
 * h("div", {class: "card", text: "hello", onclick: fn}, child, "text", [more])
 *
 * Props: class, text (textContent), style (an object of CSSOM properties, allowed by the
 * page's CSP, unlike style attributes), dataset (an object), on<event> (listeners);
 * any other key becomes an attribute (true: present, false/null: absent).
 */
export function h(tag, props, ...children) {
  const node = document.createElement(tag);
  if (props) {
    for (const [key, value] of Object.entries(props)) {
      if (value === undefined || value === null || value === false) continue;
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = String(value);
      else if (key === "style") Object.assign(node.style, value);
      else if (key === "dataset") Object.assign(node.dataset, value);
      else if (key.startsWith("on")) {
        if (typeof value !== "function") throw new TypeError(`h(): ${key} takes a function, never a string`);
        node.addEventListener(key.slice(2), value);
      } else if ((key === "href" || key === "src") && !SAFE_URL.test(String(value))) {
        throw new TypeError(`h(): refusing ${key}=${String(value).slice(0, 40)}`);
      } else if (key === "value") node.value = value;
      else if (key === "checked" || key === "disabled" || key === "selected") node[key] = Boolean(value);
      else node.setAttribute(key, value === true ? "" : String(value));
    }
  }
  append(node, children);
  return node;
}

/** Append children: nodes, strings (as Text), arrays of them; null and undefined are skipped. */
export function append(node, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(node, child);
    else if (child instanceof Node) node.appendChild(child);
    else node.appendChild(document.createTextNode(String(child)));
  }
  return node;
}

/** Remove every child of a node. */
export function clear(node) {
  while (node.firstChild) node.removeChild(node.firstChild);
  return node;
}

/** Replace a node's children. */
export function replace(node, ...children) {
  clear(node);
  return append(node, children);
}

export function $(selector, root = document) {
  return root.querySelector(selector);
}

export function $$(selector, root = document) {
  return Array.from(root.querySelectorAll(selector));
}

/** "12.3 KB" */
export function formatBytes(n) {
  if (!Number.isFinite(n)) return "";
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(n < 10240 ? 1 : 0)} KB`;
  return `${(n / (1024 * 1024)).toFixed(1)} MB`;
}

/** A number for a metrics table: 3 decimals, integers as they are, null as an em dash. */
export function formatNumber(value) {
  if (value === null || value === undefined || value === "") return "—";
  if (typeof value === "boolean") return value ? "yes" : "no";
  const n = typeof value === "number" ? value : Number(value);
  if (!Number.isFinite(n)) return String(value);
  if (Number.isInteger(n)) return String(n);
  return n.toFixed(3);
}

/** Is the element scrolled to (near) its bottom? */
export function nearBottom(node, slack = 40) {
  return node.scrollHeight - node.scrollTop - node.clientHeight < slack;
}

/** Start a download of a Blob under a file name. */
export function download(blob, filename) {
  const url = URL.createObjectURL(blob);
  const a = h("a", { href: url, download: filename, class: "hidden" });
  document.body.appendChild(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}
