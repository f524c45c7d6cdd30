// jobs.js — preheat jobs (/api/v1/jobs): the list with state and progress, a form to create
// one (credentials go to the manager once and are never shown again: the API keeps only
// header names and whether a username was given), and a job page whose layers, bytes and
// per-host results update every 2 s until the job ends; cancel.
//
// The job's shape is Dragonfly's, as Harbor sends it ({type: "preheat", args: {...},
// scheduler_cluster_ids}); progress is a list of tasks, one per (blob, host), each with a
// state, bytes done and a reason when it failed. jobView() reads it wherever the manager puts
// it (the job itself or its result), so the pages follow small changes of the answer.

import { all, api, query } from "./api.js";
import { readOnlyNote, session, writeButton, writeSubmit } from "./session.js";
import { badge, bytes, confirmAction, el, errorBox, field, heading, notice, pager, table, timeAgo, fill } from "./ui.js";

const ENDED = new Set(["success", "failure", "failed", "cancelled", "canceled"]);
const JOBS = "/api/v1/jobs";

export function jobView(job) {
  const result = job.result && typeof job.result === "object" ? job.result : {};
  const tasks = job.tasks || result.tasks || job.progress?.tasks || [];
  const state = String(job.state || "pending").toLowerCase();
  const args = job.args || {};
  const layers = new Map();
  for (const t of tasks) {
    const key = t.digest || t.url;
    if (!layers.has(key)) layers.set(key, { digest: t.digest, url: t.url, size: t.content_length || 0, hosts: [] });
    const layer = layers.get(key);
    layer.size = Math.max(layer.size, t.content_length || 0);
    layer.hosts.push(t);
  }
  const bytesTotal = tasks.reduce((s, t) => s + (t.content_length || 0), 0);
  const bytesDone = tasks.reduce((s, t) => s + (t.state === "success" ? (t.content_length || t.bytes_done || 0) : (t.bytes_done || 0)), 0);
  const done = tasks.filter((t) => t.state === "success").length;
  const failed = tasks.filter((t) => t.state === "failure" || t.state === "failed").length;
  const total = job.tasks_total || result.tasks_total || tasks.length;
  return {
    id: job.id,
    state,
    ended: ENDED.has(state),
    urls: args.urls || (args.url ? [args.url] : []),
    platform: args.platform || "",
    scope: args.scope || "",
    clusters: job.scheduler_cluster_ids || args.scheduler_cluster_ids || [],
    error: job.error || result.error || (Array.isArray(result.job_states) ? result.job_states.map((s) => s.error).filter(Boolean).join("; ") : ""),
    images: job.images || result.images || [],
    tasks, layers: [...layers.values()], bytesTotal, bytesDone, done, failed, total,
    created: job.created_at, updated: job.updated_at,
  };
}

function progressBar(done, total, label) {
  const percent = total ? Math.round((done / total) * 100) : 0;
  return el("div", { class: "progress", role: "progressbar", "aria-valuemin": 0, "aria-valuemax": 100,
    "aria-valuenow": percent, "aria-label": label },
  el("span", { style: undefined, dataset: { width: percent } }));
}

// Inline styles are refused by the console's CSP: widths are set through the CSSOM instead.
function sizeBars(root) {
  for (const bar of root.querySelectorAll(".progress > span[data-width]")) bar.style.width = bar.dataset.width + "%";
}

export async function list(root, { query: params, navigate, scope }) {
  const page = Number(params.get("page") || 1);
  const state = params.get("state") || "";
  const box = el("div", { "aria-live": "polite" });
  let timer = null;
  const load = async () => {
    try {
      const answer = await api("GET", JOBS + query({ page, per_page: 25, state }));
      const views = answer.items.map(jobView);
      fill(box, table("Preheat jobs", [
        { title: "Job", cell: (j) => el("a", { href: `#/jobs/${j.id}` }, `#${j.id}`) },
        { title: "State", cell: (j) => badge(j.state) },
        { title: "Image", cell: (j) => el("span", { class: "mono" }, j.urls.join(", ") || "—") },
        { title: "Progress", cell: (j) => el("div", {}, progressBar(j.done, j.total, `job ${j.id} progress`), ` ${j.done}/${j.total} tasks`) },
        { title: "Created", cell: (j) => timeAgo(j.created) },
      ], views, "No preheat jobs yet."),
      answer.total > answer.per_page ? pager(answer, "jobs", (p) => navigate("jobs" + query({ page: p, state }))) : null);
      sizeBars(box);
      timer = views.some((j) => !j.ended) ? setTimeout(load, 3000) : null;
    } catch (error) {
      fill(box, errorBox(error, "Cannot list preheat jobs"));
    }
  };
  scope.onLeave(() => clearTimeout(timer));
  fill(root, heading("Preheat jobs", writeButton("New preheat job", () => navigate("jobs/new"), { id: "new-job" })),
    readOnlyNote(),
    el("p", { class: "lead" }, "A preheat brings an image's layers into the seed peers (or every peer) before anyone pulls it."),
    box);
  await load();
}

export async function create(root, { navigate }) {
  const clusters = await all("/api/v1/clusters");
  const image = el("input", { name: "url", required: true, class: "mono", spellcheck: "false",
    placeholder: "registry.example.com/library/alpine:3.20" });
  const platform = el("input", { name: "platform", value: "linux/amd64", placeholder: "linux/amd64, linux/arm64/v8 or all" });
  const scopeSelect = el("select", { name: "scope" },
    [["single_seed_peer", "One seed peer per cluster"], ["all_seed_peers", "All seed peers"], ["all_peers", "All peers"]]
      .map(([value, text]) => el("option", { value }, text)));
  const clusterBoxes = clusters.map((c) => el("input", { type: "checkbox", name: "cluster", value: c.id, id: `job-cluster-${c.id}` }));
  const username = el("input", { name: "username", autocomplete: "off" });
  const password = el("input", { name: "password", type: "password", autocomplete: "new-password" });
  const status = el("div", { "aria-live": "polite" });
  const form = el("form", { class: "card", id: "job-form", onsubmit: async (event) => {
    event.preventDefault();
    fill(status);
    const ids = clusterBoxes.filter((b) => b.checked).map((b) => Number(b.value));
    const args = { type: "image", url: image.value.trim(), platform: platform.value.trim(), scope: scopeSelect.value };
    if (username.value) {
      args.username = username.value;
      args.password = password.value;
    }
    try {
      const job = await api("POST", JOBS, { type: "preheat", args, scheduler_cluster_ids: ids.length ? ids : null });
      // The credentials went once; the form forgets them before anything else happens.
      username.value = "";
      password.value = "";
      notice(`Preheat job #${job.id} created`);
      navigate(`jobs/${job.id}`);
    } catch (error) {
      fill(status, errorBox(error, "Job not created"));
    }
  } },
  el("fieldset", { disabled: !session.canWrite },
    el("legend", {}, "What to preheat"),
    field("Image", image, "a reference (host/repository:tag or @sha256:…) or a manifest URL"),
    field("Platform", platform, "os/arch[/variant], or all for every platform of an index"),
    field("Scope", scopeSelect)),
  el("fieldset", { disabled: !session.canWrite },
    el("legend", {}, "Clusters (none ticked: every cluster)"),
    clusterBoxes.length ? clusterBoxes.map((box, i) => el("div", { class: "field check" }, box,
      el("label", { for: box.id }, clusters[i].name))) : el("p", { class: "muted" }, "No clusters.")),
  el("fieldset", { disabled: !session.canWrite },
    el("legend", {}, "Registry credentials (optional)"),
    el("p", { class: "hint" }, "Sent once with the job and never shown again, here or in the API."),
    field("Username", username), field("Password", password)),
  el("div", { class: "actions" }, writeSubmit("Start preheat", { id: "start-job" })),
  status);
  fill(root, heading("New preheat job"), readOnlyNote(), form);
}

function hostResult(t) {
  return el("li", { class: "host-result", dataset: { state: t.state } },
    badge(t.state), " ", t.host, t.address ? ` (${t.address})` : "",
    t.state === "running" && t.content_length ? ` ${bytes(t.bytes_done)} of ${bytes(t.content_length)}` : "",
    t.description ? el("span", { class: "muted" }, ` — ${t.description}`) : "");
}

export async function show(root, { params, scope }) {
  const id = encodeURIComponent(params.id);
  const status = el("div", { "aria-live": "polite" });
  const body = el("div", { id: "job-progress" });
  let timer = null;
  let view = null;
  const cancel = writeButton("Cancel job", async () => {
    if (!(await confirmAction(`Cancel preheat job #${params.id}?`, "Layers already preheated stay in the caches; the rest are not fetched.", "Cancel job"))) return;
    try {
      await api("POST", `${JOBS}/${id}/cancel`);
      notice(`Job #${params.id} cancelled`);
      await load();
    } catch (error) {
      fill(status, errorBox(error, "Not cancelled"));
    }
  }, { class: "danger", id: "cancel-job" });
  const load = async () => {
    let job;
    try {
      job = await api("GET", `${JOBS}/${id}`);
    } catch (error) {
      fill(status, errorBox(error, "Cannot read the job"));
      timer = setTimeout(load, 5000);
      return;
    }
    fill(status);
    view = jobView(job);
    cancel.hidden = view.ended;
    fill(body,
      el("p", { class: "lead" }, badge(view.state), ` ${view.urls.join(", ")} · ${view.platform || "default platform"} · ${view.scope || "default scope"}`
        + ` · clusters ${view.clusters.length ? view.clusters.join(", ") : "all"} · created `, timeAgo(view.created), " · updated ", timeAgo(view.updated)),
      view.error ? errorBox({ message: view.error }, "The job failed") : null,
      el("div", { class: "stats" },
        el("div", { class: "stat" }, el("b", { id: "job-state" }, view.state.toUpperCase()), el("span", {}, "state")),
        el("div", { class: "stat" }, el("b", {}, `${view.layers.filter((l) => l.hosts.every((h) => h.state === "success")).length} / ${view.layers.length}`), el("span", {}, "layers done")),
        el("div", { class: "stat" }, el("b", {}, `${bytes(view.bytesDone)} / ${bytes(view.bytesTotal)}`), el("span", {}, "bytes")),
        el("div", { class: "stat" }, el("b", {}, `${view.done} / ${view.total}`), el("span", {}, `host tasks${view.failed ? `, ${view.failed} failed` : ""}`))),
      progressBar(view.bytesDone, view.bytesTotal || 1, "bytes preheated"),
      view.images.length ? el("p", {}, "Resolved: ", el("span", { class: "mono" }, view.images.join(", "))) : null,
      el("h2", {}, "Layers"),
      table("Layers", [
        { title: "Layer", cell: (l) => el("code", { title: l.url }, (l.digest || l.url).replace(/^sha256:/, "").slice(0, 16) + "…") },
        { title: "Size", cell: (l) => bytes(l.size), class: "num" },
        { title: "Hosts", cell: (l) => el("ul", { class: "plain" }, l.hosts.map(hostResult)) },
      ], view.layers, view.ended ? "The job had no layers." : "Resolving the image…"));
    sizeBars(body);
    timer = view.ended ? null : setTimeout(load, 2000);
  };
  scope.onLeave(() => clearTimeout(timer));
  fill(root, heading(`Preheat job #${params.id}`, cancel), readOnlyNote(), status, body);
  await load();
}
