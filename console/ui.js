// ui.js — building blocks of the console's pages: elements (text is always set as text, never
// parsed as HTML), relative times, sizes, tables, pagers, notices and confirmations.

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") node.addEventListener(key.slice(2), value);
    else if (key === "class") node.className = value;
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (value === true) node.setAttribute(key, "");
    else node.setAttribute(key, String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

// ---- times -----------------------------------------------------------------------------------

const UNITS = [
  ["year", 365 * 86400],
  ["month", 30 * 86400],
  ["day", 86400],
  ["h", 3600],
  ["min", 60],
  ["s", 1],
];

export function relative(date, now = Date.now()) {
  const seconds = Math.round((now - date.getTime()) / 1000);
  const past = seconds >= 0;
  const span = Math.abs(seconds);
  if (span < 5) return "just now";
  for (const [unit, size] of UNITS) {
    if (span >= size) {
      const count = Math.floor(span / size);
      const label = unit.length > 3 && count > 1 ? unit + "s" : unit;
      return past ? `${count} ${label} ago` : `in ${count} ${label}`;
    }
  }
  return "just now";
}

// <time> with "3 min ago" and the exact local time on hover; "—" (never) for none. The page
// refreshes the words every 15 s (refreshTimes).
export function timeAgo(text, never = "never") {
  if (!text) return el("span", { class: "muted" }, never);
  const date = new Date(text);
  if (Number.isNaN(date.getTime())) return el("span", {}, text);
  return el("time", { datetime: date.toISOString(), title: date.toLocaleString(), dataset: { rel: "1" } },
    relative(date));
}

export function refreshTimes(root = document) {
  const now = Date.now();
  for (const node of root.querySelectorAll("time[data-rel]")) {
    node.textContent = relative(new Date(node.getAttribute("datetime")), now);
  }
}

// ---- sizes -----------------------------------------------------------------------------------

export function bytes(count) {
  if (count === undefined || count === null) return "—";
  const units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
  let value = Number(count);
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit === 0 ? `${value} B` : `${value.toFixed(value < 10 ? 1 : 0)} ${units[unit]}`;
}

// ---- state badges ----------------------------------------------------------------------------

export function badge(state) {
  const text = String(state ?? "unknown");
  return el("span", { class: "badge badge-" + text.toLowerCase().replace(/[^a-z]/g, "") }, text);
}

// ---- tables ----------------------------------------------------------------------------------

// columns: [{ title, cell: (item) => Node|string, class? }]. Tables scroll sideways on narrow
// screens instead of squeezing; each cell carries its column title for the phone layout.
export function table(caption, columns, items, empty = "Nothing here yet.") {
  if (!items.length) return el("p", { class: "empty" }, empty);
  return el("div", { class: "table-wrap" },
    el("table", {},
      el("caption", { class: "sr-only" }, caption),
      el("thead", {}, el("tr", {}, columns.map((c) => el("th", { scope: "col", class: c.class }, c.title)))),
      el("tbody", {}, items.map((item) => el("tr", {},
        columns.map((c) => el("td", { class: c.class, "data-label": c.title }, c.cell(item))))))));
}

// A pager for server-side pages: "Page 3 of 200 (10,000 hosts)" with first/previous/next/last.
export function pager(answer, noun, go) {
  const pages = Math.max(1, Math.ceil(answer.total / answer.per_page));
  const page = answer.page;
  const button = (label, target, disabled) =>
    el("button", { type: "button", class: "secondary", disabled: disabled, onclick: () => go(target) }, label);
  return el("nav", { class: "pager", "aria-label": `${noun} pages` },
    button("« First", 1, page <= 1),
    button("‹ Previous", page - 1, page <= 1),
    el("span", { class: "pager-text" },
      `Page ${page} of ${pages} (${answer.total.toLocaleString()} ${noun})`),
    button("Next ›", page + 1, page >= pages),
    button("Last »", pages, page >= pages));
}

// ---- messages --------------------------------------------------------------------------------

export function errorBox(error, what) {
  const words = error && error.message ? error.message : String(error);
  return el("div", { class: "error", role: "alert" },
    el("strong", {}, what ? `${what}: ` : "Error: "), words);
}

let noticeTimer = null;
export function notice(text) {
  const box = document.getElementById("notice");
  box.textContent = text;
  box.classList.add("shown");
  clearTimeout(noticeTimer);
  noticeTimer = setTimeout(() => box.classList.remove("shown"), 6000);
}

// A modal confirmation (<dialog>): resolves to true when the person confirms.
export function confirmAction(title, text, action = "Confirm") {
  const dialog = document.getElementById("confirm");
  document.getElementById("confirm-title").textContent = title;
  document.getElementById("confirm-text").textContent = text;
  document.getElementById("confirm-ok").textContent = action;
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
    dialog.returnValue = "cancel";
    dialog.showModal();
  });
}

// A labelled form field: label, input (or select/textarea) and an optional hint.
let fieldSerial = 0;
export function field(label, input, hint) {
  const id = input.id || `f${++fieldSerial}`;
  input.id = id;
  const hintNode = hint ? el("small", { id: id + "-hint", class: "hint" }, hint) : null;
  if (hintNode) input.setAttribute("aria-describedby", hintNode.id);
  return el("div", { class: "field" }, el("label", { for: id }, label), input, hintNode);
}

// A page heading with optional actions on the right.
export function heading(title, ...actions) {
  return el("div", { class: "page-head" }, el("h1", {}, title), el("div", { class: "actions" }, actions));
}

// Replaces a node's children, skipping null, false and undefined (a section a page leaves
// out, such as the read-only note for a token that may write).
export function fill(node, ...children) {
  node.replaceChildren(...children.flat(Infinity).filter((c) => c !== null && c !== undefined && c !== false));
  return node;
}
