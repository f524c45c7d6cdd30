// app.js — the console's shell: login with a personal access token, the navigation, and a
// hash router (#/clusters, #/jobs/12, ...) that hands each page the element to fill.

import { onUnauthorized } from "./api.js";
import { login, logout, resume, session } from "./session.js";
import { el, errorBox, field, refreshTimes, fill } from "./ui.js";
import * as clusters from "./clusters.js";
import * as hosts from "./hosts.js";
import * as schedulers from "./schedulers.js";
import * as jobs from "./jobs.js";
import * as swarm from "./swarm.js";
import * as tokens from "./tokens.js";

// Routes: a pattern of path segments (":name" captures one) and its page.
const ROUTES = [
  ["clusters", clusters.list],
  ["clusters/new", clusters.create],
  ["clusters/:id", clusters.edit],
  ["hosts", hosts.list],
  ["schedulers", schedulers.list],
  ["jobs", jobs.list],
  ["jobs/new", jobs.create],
  ["jobs/:id", jobs.show],
  ["swarm", swarm.show],
  ["swarm/:task", swarm.show],
  ["tokens", tokens.list],
];

const view = () => document.getElementById("view");

function match(path) {
  const parts = path.split("/").filter(Boolean);
  for (const [pattern, page] of ROUTES) {
    const wanted = pattern.split("/");
    if (wanted.length !== parts.length) continue;
    const params = {};
    if (wanted.every((segment, i) => segment.startsWith(":")
      ? ((params[segment.slice(1)] = decodeURIComponent(parts[i])), true)
      : segment === parts[i])) return { page, params };
  }
  return null;
}

// Pages may start timers (live progress): each render gets a fresh scope whose cleanups run
// when the person navigates away.
let cleanups = [];
function scope() {
  return { onLeave: (fn) => cleanups.push(fn) };
}

function currentPath() {
  const [path, search] = location.hash.replace(/^#\/?/, "").split("?");
  return { path: path || "clusters", query: new URLSearchParams(search || "") };
}

async function render() {
  cleanups.forEach((fn) => fn());
  cleanups = [];
  const root = view();
  if (!session.loggedIn) {
    showLogin();
    return;
  }
  const { path, query } = currentPath();
  const found = match(path);
  for (const link of document.querySelectorAll("#nav a")) {
    const section = link.getAttribute("href").slice(2);
    if (path === section || path.startsWith(section + "/")) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  fill(root, el("p", { class: "loading" }, "Loading…"));
  if (!found) {
    fill(root, el("h1", {}, "Not found"), el("p", {}, `The console has no page “${path}”.`));
    return;
  }
  try {
    await found.page(root, { params: found.params, query, scope: scope(), navigate });
  } catch (error) {
    fill(root, el("h1", {}, "Something went wrong"), errorBox(error));
  }
  const heading = root.querySelector("h1");
  document.title = heading ? `${heading.textContent} — zfly console` : "zfly console";
}

export function navigate(path) {
  if (location.hash === "#/" + path) render();
  else location.hash = "#/" + path;
}

function showChrome(signedIn) {
  document.getElementById("nav").hidden = !signedIn;
  document.getElementById("who").hidden = !signedIn;
  if (signedIn) {
    const name = session.user ? session.user.name : "token";
    const role = session.canWrite ? "can change things" : "read-only";
    document.getElementById("who-name").textContent = `${name} (${role})`;
  }
}

function showLogin(message) {
  showChrome(false);
  const input = el("input", { type: "password", name: "token", autocomplete: "off", required: true,
    spellcheck: "false", placeholder: "zfp_…" });
  const status = el("div", { "aria-live": "polite" }, message ? errorBox({ message }) : null);
  const form = el("form", { class: "card login", onsubmit: async (event) => {
    event.preventDefault();
    fill(status, el("p", { class: "loading" }, "Checking the token…"));
    try {
      await login(input.value.trim());
      input.value = "";
      showChrome(true);
      render();
    } catch (error) {
      logout();
      fill(status, errorBox(error, "Cannot log in"));
    }
  } },
  el("h1", {}, "Log in to the zfly console"),
  el("p", {}, "Paste a personal access token. ",
    el("code", {}, "zfly manager init"), " prints the first one; ",
    el("code", {}, "zfly-admin pat create"), " or the Tokens page make more. The token stays in this tab only."),
  field("Personal access token", input),
  el("button", { type: "submit" }, "Log in"),
  status);
  fill(view(), form);
  document.title = "Log in — zfly console";
  input.focus();
}

async function start() {
  document.getElementById("logout").addEventListener("click", () => {
    logout();
    location.hash = "#/clusters";
    showLogin();
  });
  onUnauthorized((error) => {
    logout();
    showLogin(error.message);
  });
  window.addEventListener("hashchange", render);
  setInterval(() => refreshTimes(), 15000);
  try {
    if (await resume()) showChrome(true);
  } catch (error) {
    logout();
    showLogin(error.message);
    return;
  }
  render();
}

start();
