// schedulers.js — schedulers and seed peers: state and last keep-alive
// (GET /api/v1/schedulers, /api/v1/seed-peers), refreshed every 10 s while the page is open.

import { all, api, query } from "./api.js";
import { badge, el, errorBox, heading, pager, table, timeAgo, fill } from "./ui.js";

export async function list(root, { query: params, navigate, scope }) {
  const schedulerPage = Number(params.get("page") || 1);
  const seedPage = Number(params.get("seed_page") || 1);
  const clusters = await all("/api/v1/clusters");
  const clusterName = new Map(clusters.map((c) => [c.id, c.name]));
  const cluster = (item) => clusterName.get(item.cluster_id) || String(item.cluster_id ?? "—");
  const schedulersBox = el("section", { "aria-labelledby": "schedulers-title" });
  const seedsBox = el("section", { "aria-labelledby": "seeds-title" });

  async function load() {
    try {
      const [schedulers, seeds] = await Promise.all([
        api("GET", "/api/v1/schedulers" + query({ page: schedulerPage, per_page: 50 })),
        api("GET", "/api/v1/seed-peers" + query({ page: seedPage, per_page: 50 })),
      ]);
      fill(schedulersBox,
        el("h2", { id: "schedulers-title" }, `Schedulers (${schedulers.total})`),
        table("Schedulers", [
          { title: "Name", cell: (s) => el("span", { title: s.public_key }, s.name) },
          { title: "State", cell: (s) => badge(s.state) },
          { title: "Cluster", cell: cluster },
          { title: "Endpoint", cell: (s) => el("code", {}, s.endpoint) },
          { title: "Keep-alive", cell: (s) => timeAgo(s.last_keepalive) },
        ], schedulers.items, "No scheduler has registered."),
        schedulers.total > schedulers.per_page
          ? pager(schedulers, "schedulers", (p) => navigate("schedulers" + query({ page: p, seed_page: seedPage }))) : null);
      fill(seedsBox,
        el("h2", { id: "seeds-title" }, `Seed peers (${seeds.total})`),
        table("Seed peers", [
          { title: "Name", cell: (s) => el("span", { title: s.public_key }, s.name) },
          { title: "State", cell: (s) => badge(s.state) },
          { title: "Cluster", cell: cluster },
          { title: "Storage", cell: (s) => el("code", {}, s.storage_endpoint || "—") },
          { title: "Fetcher", cell: (s) => el("code", {}, s.fetcher_endpoint || "—") },
          { title: "Keep-alive", cell: (s) => timeAgo(s.last_keepalive) },
        ], seeds.items, "No seed peer has registered."),
        seeds.total > seeds.per_page
          ? pager(seeds, "seed peers", (p) => navigate("schedulers" + query({ page: schedulerPage, seed_page: p }))) : null);
    } catch (error) {
      fill(schedulersBox, errorBox(error, "Cannot list schedulers"));
    }
  }

  await load();
  const timer = setInterval(load, 10000);
  scope.onLeave(() => clearInterval(timer));
  fill(root,
    heading("Schedulers and seed peers"),
    el("p", { class: "lead" }, "They keep alive by joining the manager again every few seconds; one that falls silent is marked inactive and leaves its nodes' rings."),
    schedulersBox, seedsBox);
}
