// swarm.js — one task's swarm as its scheduler sees it (GET /api/v1/tasks/{id}/swarm): the
// peers, where their bytes came from and their current parents, drawn as an SVG graph with the
// bytes on each edge. Layers go down from the origin: a peer sits one row below the first
// source it received from. Refreshed every 3 s until every peer has finished.

import { all, api, query } from "./api.js";
import { badge, bytes, el, errorBox, field, heading, table, fill } from "./ui.js";

const SVG = "http://www.w3.org/2000/svg";
const DRAW_MAX = 200; // peers drawn; the table below lists them all

function svg(tag, attrs = {}, ...children) {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs)) if (value !== undefined) node.setAttribute(key, String(value));
  for (const child of children.flat()) if (child) node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  return node;
}

// Edges: from -> to with bytes received (history) and whether it is a parent edge now.
export function edgesOf(swarm) {
  const edges = new Map();
  const edge = (from, to) => {
    const key = `${from}\u0000${to}`;
    if (!edges.has(key)) edges.set(key, { from, to, bytes: 0, current: false });
    return edges.get(key);
  };
  for (const peer of swarm.peers) {
    for (const r of peer.received || []) edge(r.from, peer.host_id).bytes += r.bytes;
    for (const parent of peer.parents || []) edge(parent, peer.host_id).current = true;
  }
  return [...edges.values()];
}

function layout(swarm, edges) {
  const peers = swarm.peers.slice(0, DRAW_MAX);
  const names = new Set(peers.map((p) => p.host_id));
  const hasOrigin = edges.some((e) => e.from === "source") || !!swarm.source;
  const depth = new Map();
  const queue = [];
  if (hasOrigin) {
    depth.set("source", 0);
    queue.push("source");
  }
  // Breadth first from the origin over the edges; peers nothing reaches go to row 1.
  const out = new Map();
  for (const e of edges) {
    if (!out.has(e.from)) out.set(e.from, []);
    out.get(e.from).push(e.to);
  }
  while (queue.length) {
    const node = queue.shift();
    for (const next of out.get(node) || []) {
      if (!depth.has(next) && names.has(next)) {
        depth.set(next, depth.get(node) + 1);
        queue.push(next);
      }
    }
  }
  for (const p of peers) if (!depth.has(p.host_id)) depth.set(p.host_id, p.seed ? 1 : 2);
  const rows = new Map();
  const order = [...(hasOrigin ? ["source"] : []), ...peers.map((p) => p.host_id)];
  for (const name of order) {
    const d = depth.get(name);
    if (!rows.has(d)) rows.set(d, []);
    rows.get(d).push(name);
  }
  const rowKeys = [...rows.keys()].sort((a, b) => a - b);
  const widest = Math.max(...[...rows.values()].map((r) => r.length));
  const width = Math.max(640, widest * 120 + 80);
  const rowHeight = 130;
  const height = rowKeys.length * rowHeight + 40;
  const position = new Map();
  rowKeys.forEach((key, rowIndex) => {
    const row = rows.get(key);
    row.forEach((name, i) => position.set(name, {
      x: ((i + 1) * width) / (row.length + 1),
      y: 50 + rowIndex * rowHeight,
    }));
  });
  return { peers, position, width, height };
}

function picture(swarm, edges) {
  const { peers, position, width, height } = layout(swarm, edges);
  const byName = new Map(peers.map((p) => [p.host_id, p]));
  const maxBytes = Math.max(1, ...edges.map((e) => e.bytes));
  const title = `Swarm of task ${swarm.task_id.slice(0, 12)}…`;
  const finished = swarm.peers.filter((p) => p.state === "finished").length;
  const description = `${swarm.peers.length} peers (${finished} finished), ${edges.length} edges; `
    + `the origin sent ${bytes(edges.filter((e) => e.from === "source").reduce((s, e) => s + e.bytes, 0))}.`;
  const root = svg("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", "aria-labelledby": "swarm-svg-title swarm-svg-desc" },
    svg("title", { id: "swarm-svg-title" }, title),
    svg("desc", { id: "swarm-svg-desc" }, description),
    svg("defs", {}, svg("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 10, refY: 5, markerWidth: 9, markerHeight: 9, markerUnits: "userSpaceOnUse", orient: "auto-start-reverse" },
      svg("path", { d: "M 0 0 L 10 5 L 0 10 z", fill: "#57606a" }))));
  const radius = 18;
  for (const e of edges) {
    const a = position.get(e.from);
    const b = position.get(e.to);
    if (!a || !b) continue;
    // Curved so that two peers exchanging both ways get two visible edges.
    const dx = b.x - a.x;
    const dy = b.y - a.y;
    const length = Math.max(1, Math.hypot(dx, dy));
    const bend = 0.18 * length;
    const cx = (a.x + b.x) / 2 - (dy / length) * bend;
    const cy = (a.y + b.y) / 2 + (dx / length) * bend;
    const start = { x: a.x + (dx / length) * radius, y: a.y + (dy / length) * radius };
    const end = { x: b.x - (dx / length) * (radius + 2), y: b.y - (dy / length) * (radius + 2) };
    const strokeWidth = 1 + 4 * Math.sqrt(e.bytes / maxBytes);
    root.append(svg("path", {
      class: "edge" + (e.current ? " current" : ""),
      d: `M ${start.x} ${start.y} Q ${cx} ${cy} ${end.x} ${end.y}`,
      "stroke-width": strokeWidth.toFixed(1),
      "stroke-dasharray": e.bytes ? undefined : "4 3",
      "marker-end": "url(#arrow)",
      "data-from": e.from, "data-to": e.to, "data-bytes": e.bytes,
    }, svg("title", {}, `${e.from} → ${e.to}: ${bytes(e.bytes)}${e.current ? " (parent now)" : ""}`)));
    if (e.bytes) root.append(svg("text", { class: "edge-label", x: cx, y: cy, "text-anchor": "middle" }, bytes(e.bytes)));
  }
  for (const [name, at] of position) {
    const peer = byName.get(name);
    const kind = name === "source" ? "origin" : peer?.seed ? "seed" : peer?.state === "finished" ? "peer" : "running";
    const label = name === "source" ? "origin" : name;
    const progress = peer && swarm.piece_count ? `${peer.finished_count}/${swarm.piece_count}` : peer ? String(peer.finished_count) : "";
    root.append(svg("g", { class: `node ${kind}`, "data-host": name },
      svg("title", {}, name === "source" ? "the origin (registry or file server)" : `${name}: ${peer.state}, ${progress} pieces`),
      svg("circle", { cx: at.x, cy: at.y, r: radius }),
      svg("text", { x: at.x, y: at.y + radius + 14, "text-anchor": "middle" }, label.length > 18 ? label.slice(0, 17) + "…" : label),
      progress ? svg("text", { x: at.x, y: at.y + 4, "text-anchor": "middle", "font-size": 10 }, progress) : null));
  }
  return root;
}

function render(box, swarm) {
  const edges = edgesOf(swarm);
  const fromOrigin = edges.filter((e) => e.from === "source").reduce((s, e) => s + e.bytes, 0);
  const total = edges.reduce((s, e) => s + e.bytes, 0);
  const finished = swarm.peers.filter((p) => p.state === "finished").length;
  fill(box,
    el("div", { class: "stats" },
      el("div", { class: "stat" }, el("b", {}, `${finished} / ${swarm.peers.length}`), el("span", {}, "peers finished")),
      el("div", { class: "stat" }, el("b", {}, bytes(swarm.content_length)), el("span", {}, `size, ${swarm.piece_count} pieces`)),
      el("div", { class: "stat" }, el("b", {}, bytes(fromOrigin)), el("span", {}, "from the origin")),
      el("div", { class: "stat" }, el("b", {}, bytes(total - fromOrigin)), el("span", {}, "between peers")),
      el("div", { class: "stat" }, el("b", {}, swarm.scheduler), el("span", {}, `scheduler, cluster ${swarm.cluster_id}`))),
    swarm.truncated || swarm.peers.length > DRAW_MAX
      ? el("p", { class: "readonly-note" }, `The picture shows the first ${Math.min(DRAW_MAX, swarm.peers.length)} peers${swarm.truncated ? " the scheduler listed (it has more)" : ""}; the table lists every peer received.`) : null,
    el("div", { class: "legend", "aria-hidden": "true" },
      el("span", {}, "● origin (yellow), seed peers (blue), finished peers (green)"),
      el("span", {}, "Blue edge: a parent now; grey: bytes received earlier; dashed: no bytes yet")),
    // It scrolls sideways on a phone: focusable, so a keyboard can scroll it too.
    el("figure", { class: "swarm", id: "swarm-picture", tabindex: 0, role: "region", "aria-label": "Swarm picture" },
      picture(swarm, edges)),
    el("details", {},
      el("summary", {}, "Edges as a table"),
      table("Edges", [
        { title: "From", cell: (e) => (e.from === "source" ? "origin" : e.from) },
        { title: "To", cell: (e) => e.to },
        { title: "Bytes", cell: (e) => bytes(e.bytes), class: "num" },
        { title: "Parent now", cell: (e) => (e.current ? "yes" : "no") },
      ], edges, "No edges yet.")),
    el("h2", {}, "Peers"),
    table("Peers", [
      { title: "Host", cell: (p) => p.host_id },
      { title: "State", cell: (p) => badge(p.state) },
      { title: "Seed", cell: (p) => (p.seed ? "yes" : "") },
      { title: "Pieces", cell: (p) => `${p.finished_count}${swarm.piece_count ? " / " + swarm.piece_count : ""}`, class: "num" },
      { title: "Parents now", cell: (p) => (p.parents.length ? p.parents.join(", ") : "—") },
      { title: "Received", cell: (p) => p.received.map((r) => `${bytes(r.bytes)} from ${r.from === "source" ? "origin" : r.from}`).join(", ") || "—" },
    ], swarm.peers));
  return finished === swarm.peers.length;
}

export async function show(root, { params, query: search, navigate, scope }) {
  const clusters = await all("/api/v1/clusters");
  const task = (params.task || "").trim();
  const clusterId = search.get("cluster_id") || "";
  const input = el("input", { name: "task", value: task, class: "mono", required: true,
    pattern: "(sha256:)?[0-9a-f]{64}", placeholder: "sha256:… or a task id", spellcheck: "false" });
  const clusterSelect = el("select", { name: "cluster_id" }, el("option", { value: "" }, "Any cluster"),
    clusters.map((c) => el("option", { value: c.id, selected: String(c.id) === clusterId }, c.name)));
  const form = el("form", { class: "filters", role: "search", "aria-label": "Find a task", onsubmit: (event) => {
    event.preventDefault();
    navigate(`swarm/${input.value.trim()}` + query({ cluster_id: clusterSelect.value }));
  } },
  field("Task", input, "an image layer's digest (sha256:…), or a task id (64 hex characters, as zfly-get and the logs show it)"),
  field("Cluster", clusterSelect),
  el("button", { type: "submit" }, "Show swarm"));
  const box = el("div", { "aria-live": "polite", id: "swarm" });
  fill(root, heading("Swarm"),
    el("p", { class: "lead" }, "A task's peers and where their bytes came from, as the scheduler that owns the task sees them."),
    form, box);
  if (!task) return;
  let timer = null;
  const load = async () => {
    try {
      const swarm = await api("GET", `/api/v1/tasks/${encodeURIComponent(task)}/swarm` + query({ cluster_id: clusterId }));
      const done = render(box, swarm);
      timer = done ? null : setTimeout(load, 3000);
    } catch (error) {
      fill(box, errorBox(error, "No swarm to show"));
    }
  };
  scope.onLeave(() => clearTimeout(timer));
  await load();
}
