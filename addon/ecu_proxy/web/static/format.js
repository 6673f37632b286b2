// Small helpers shared by the views: number and time formatting, element creation.

export const DASH = "–";

/** Return `v` with at most `digits` decimals and no trailing zeros, or a dash. */
export function num(v, digits) {
  if (v === null || v === undefined || Number.isNaN(v)) return DASH;
  const text = Number(v).toFixed(digits);
  return digits > 0 ? text.replace(/\.?0+$/, "") : text;
}

/** Set a number element's text and its data-v/data-d (what the text was made of). */
export function setNum(node, v, digits, unit = "") {
  // Compare with what was set last (a plain property): reading the DOM costs more.
  if (node.shown === v && node.digits === digits) return;
  node.shown = v;
  node.digits = digits;
  const raw = v === null || v === undefined ? "null" : String(v);
  node.dataset.v = raw;
  node.dataset.d = String(digits);
  const text = num(v, digits);
  node.textContent = text === DASH || !unit ? text : `${text} ${unit}`;
}

/** Return "12 s ago" style text for an ISO time. */
export function ago(iso, now = Date.now()) {
  if (!iso) return "never";
  const t = Date.parse(iso);
  if (Number.isNaN(t)) return iso;
  const s = Math.round((now - t) / 1000);
  if (s < 0) return "just now";
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min ago`;
  return `${Math.floor(s / 86400)} d ago`;
}

/** Create an element with attributes/properties and children. */
export function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("data-") || key.startsWith("aria-") || key === "role" ||
             key === "for" || key === "tabindex" || key === "title" || key === "href" ||
             key === "hidden" || key === "type") node.setAttribute(key, value === true ? "" : value);
    else node[key] = value;
  }
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

/** Refresh every element that shows a relative time. */
export function refreshAges(root = document) {
  const now = Date.now();
  for (const node of root.querySelectorAll("[data-ago]")) {
    const prefix = node.dataset.agoPrefix;
    const text = ago(node.dataset.ago, now);
    node.textContent = prefix ? `${prefix} · ${text}` : text;
  }
}
