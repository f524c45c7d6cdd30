// hosts.js — the hosts that joined: state, labels, cluster, cache use, last seen; a filter
// (cluster, state, name) and revoke. Lists come a page at a time from the server
// (GET /api/v1/hosts?page=&per_page=), so 10,000 hosts cost one page of rows in the DOM.

import { all, api, query } from "./api.js";
import { confirmedButton, readOnlyNote } from "./session.js";
import { badge, bytes, el, field, heading, notice, pager, table, timeAgo, fill } from "./ui.js";

const PER_PAGE = 50;

function labels(host) {
  const chips = [];
  if (host.idc) chips.push(`idc=${host.idc}`);
  if (host.location) chips.push(`location=${host.location}`);
  for (const [key, value] of Object.entries(host.labels || {})) chips.push(`${key}=${value}`);
  return chips.length ? el("ul", { class: "chips" }, chips.map((c) => el("li", {}, c))) : el("span", { class: "muted" }, "none");
}

function roles(host) {
  const parts = [];
  if (host.is_scheduler) parts.push(badge("scheduler"));
  if (host.is_seed) parts.push(badge("seed"));
  return parts.length ? parts : el("span", { class: "muted" }, "peer");
}

// Cache use as the node's storage measured it before its last join: "12 MiB of 100 GiB"
// with a meter, and the number of tasks; capacity is the quota, or the cache's filesystem.
function cacheUse(host) {
  if (host.cache_capacity === undefined || host.cache_capacity === null) {
    return el("span", { class: "muted", title: "a host without storage (a scheduler alone), or one that has not joined since" }, "none reported");
  }
  const capacity = host.cache_capacity;
  const percent = Math.min(100, Math.round((host.cache_bytes / capacity) * 100));
  const tasks = host.cache_tasks === 1 ? "1 task" : `${(host.cache_tasks ?? 0).toLocaleString()} tasks`;
  return el("span", { class: "cache", title: `${Number(host.cache_bytes).toLocaleString()} bytes in ${tasks}, of ${Number(capacity).toLocaleString()}: the cache's quota, or its filesystem's size` },
    el("meter", { min: 0, max: capacity, value: host.cache_bytes, "aria-label": `cache ${percent}% of capacity` }),
    ` ${bytes(host.cache_bytes)} of ${bytes(capacity)}, ${tasks}`);
}

export async function list(root, { query: params, navigate }) {
  const filters = {
    cluster_id: params.get("cluster_id") || "",
    state: params.get("state") || "",
    name: params.get("name") || "",
  };
  const page = Number(params.get("page") || 1);
  const clusters = await all("/api/v1/clusters");
  const clusterName = new Map(clusters.map((c) => [c.id, c.name]));
  const answer = await api("GET", "/api/v1/hosts" + query({ ...filters, page, per_page: PER_PAGE }));
  const go = (changes) => navigate("hosts" + query({ ...filters, page, ...changes }));

  const clusterSelect = el("select", { name: "cluster_id" },
    el("option", { value: "" }, "All clusters"),
    clusters.map((c) => el("option", { value: c.id, selected: String(c.id) === filters.cluster_id }, c.name)));
  const stateSelect = el("select", { name: "state" },
    [["", "Any state"], ["active", "Active"], ["revoked", "Revoked"]]
      .map(([value, text]) => el("option", { value, selected: value === filters.state }, text)));
  const nameInput = el("input", { type: "search", name: "name", value: filters.name, placeholder: "part of a name" });
  const filterForm = el("form", { class: "filters", role: "search", "aria-label": "Filter hosts", onsubmit: (event) => {
    event.preventDefault();
    go({ cluster_id: clusterSelect.value, state: stateSelect.value, name: nameInput.value.trim(), page: 1 });
  } },
  field("Cluster", clusterSelect), field("State", stateSelect), field("Name", nameInput),
  el("button", { type: "submit" }, "Filter"));

  const status = el("div", { "aria-live": "polite" });
  const revoke = (host) => confirmedButton("Revoke", {
    title: `Revoke host ${host.name}?`,
    text: "Its key is refused by every node of the cluster within seconds, and it stops being a parent. To come back it needs a new keypair and a join token.",
    action: "Revoke",
  }, async () => {
    await api("DELETE", `/api/v1/hosts/${host.id}`);
    notice(`Host ${host.name} revoked`);
    go({});
  }, status, `Host ${host.name} not revoked`, { class: "danger small", "aria-label": `Revoke ${host.name}` });

  fill(root,
    heading("Hosts"),
    readOnlyNote(),
    filterForm,
    status,
    table("Hosts", [
      { title: "Name", cell: (h) => el("span", { title: h.public_key }, h.name) },
      { title: "State", cell: (h) => badge(h.state) },
      { title: "Cluster", cell: (h) => clusterName.get(h.cluster_id) || String(h.cluster_id ?? "—") },
      { title: "Address", cell: (h) => h.address || "—" },
      { title: "Roles", cell: roles },
      { title: "Labels", cell: labels },
      { title: "Cache", cell: cacheUse },
      { title: "Last seen", cell: (h) => timeAgo(h.last_seen) },
      { title: "", cell: (h) => (h.state === "active" ? revoke(h) : timeAgo(h.revoked_at, "")) },
    ], answer.items, "No host matches."),
    pager(answer, "hosts", (p) => go({ page: p })));
}
