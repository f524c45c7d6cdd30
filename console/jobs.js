// jobs.js — preheat jobs (/api/v1/jobs, as zfly-preheat and scripts call it): the list with
// state and progress, a form to create one, a job page whose blobs ("layers"), bytes and
// per-host results update every second until the job ends, and cancel.
//
// Credentials go to the manager once, in the create request, and are never shown again: the
// form forgets them as soon as the request is answered, and the API itself never returns
// them (a job shows only that it has credentials, and the names of its extra headers).

import { all, api, query } from "./api.js";
import { confirmedButton, readOnlyNote, session, writeButton, writeSubmit } from "./session.js";
import { badge, bytes, el, errorBox, field, heading, notice, pager, table, timeAgo, fill } from "./ui.js";

const JOBS = "/api/v1/jobs";
const ENDED = new Set(["success", "failure", "cancelled"]);
const STATES = ["pending", "running", "success", "failure", "cancelled"];
const SCOPES = {
  single_seed_peer: "One seed peer per cluster",
  all_seed_peers: "All seed peers",
  all_peers: "All peers",
};

// The job's numbers, whichever page shows them. The list's jobs have progress without blobs.
function summary(job) {
  const progress = job.progress || {};
  const args = job.args || {};
  return {
    ended: ENDED.has(job.state),
    urls: args.urls || [],
    tasksTotal: progress.tasks_total || 0,
    tasksDone: progress.tasks_succeeded || 0,
    tasksFailed: progress.tasks_failed || 0,
    bytesTotal: progress.bytes_total || 0,
    bytesDone: progress.bytes_done || 0,
    blobsTotal: progress.blobs_total,
    blobsDone: progress.blobs_done,
  };
}

// A bar people and screen readers can read: its width is set through the CSSOM (the
// console's Content-Security-Policy refuses inline style attributes).
function progressBar(done, total, label) {
  const percent = total ? Math.min(100, Math.round((done / total) * 100)) : 0;
  const fillBar = el("span");
  fillBar.style.width = percent + "%";
  return el("div", { class: "progress", role: "progressbar", "aria-valuemin": 0, "aria-valuemax": 100,
    "aria-valuenow": percent, "aria-label": label, title: `${percent}%` }, fillBar);
}

function progressCell(job) {
  const s = summary(job);
  if (!s.tasksTotal) return el("span", { class: "muted" }, s.ended ? "nothing to fetch" : "resolving…");
  return el("div", { class: "job-progress" },
    progressBar(s.bytesDone, s.bytesTotal, `job ${job.id}: ${s.bytesDone} of ${s.bytesTotal} bytes`),
    el("span", {}, `${s.tasksDone}/${s.tasksTotal} tasks · ${bytes(s.bytesDone)} of ${bytes(s.bytesTotal)}`
      + (s.tasksFailed ? ` · ${s.tasksFailed} failed` : "")));
}

export async function list(root, { query: params, navigate, scope }) {
  const page = Number(params.get("page") || 1);
  const state = params.get("state") || "";
  const box = el("div", { id: "job-list" });
  let timer = null;
  const stateSelect = el("select", { name: "state" }, el("option", { value: "" }, "Any state"),
    STATES.map((s) => el("option", { value: s, selected: s === state }, s)));
  const filter = el("form", { class: "filters", role: "search", "aria-label": "Filter jobs", onsubmit: (event) => {
    event.preventDefault();
    navigate("jobs" + query({ state: stateSelect.value }));
  } }, field("State", stateSelect), el("button", { type: "submit" }, "Filter"));
  const load = async () => {
    try {
      const answer = await api("GET", JOBS + query({ page, per_page: 25, state }));
      fill(box, table("Preheat jobs", [
        { title: "Job", cell: (j) => el("a", { href: `#/jobs/${j.id}` }, `#${j.id}`) },
        { title: "State", cell: (j) => badge(j.state) },
        { title: "What", cell: (j) => el("span", { class: "mono wrap" }, (j.args?.urls || []).join(", ") || "—") },
        { title: "Scope", cell: (j) => SCOPES[j.args?.scope] || j.args?.scope || "—" },
        { title: "Progress", cell: progressCell },
        { title: "Created", cell: (j) => el("span", {}, timeAgo(j.created_at), j.created_by ? ` by ${j.created_by}` : "") },
      ], answer.items, state ? `No ${state} preheat jobs.` : "No preheat jobs yet."),
      answer.total > answer.per_page ? pager(answer, "jobs", (p) => navigate("jobs" + query({ page: p, state }))) : null);
      // Refreshed while a job on this page is still going.
      timer = answer.items.some((j) => !ENDED.has(j.state)) ? setTimeout(load, 2000) : null;
    } catch (error) {
      fill(box, errorBox(error, "Cannot list preheat jobs"));
    }
  };
  scope.onLeave(() => clearTimeout(timer));
  fill(root, heading("Preheat jobs", writeButton("New preheat job", () => navigate("jobs/new"), { id: "new-job" })),
    readOnlyNote(),
    el("p", { class: "lead" }, "A preheat brings an image's layers (or files) into seed peers or every peer before anyone pulls them."),
    filter, box);
  await load();
}

export async function create(root, { navigate }) {
  const clusters = await all("/api/v1/clusters");
  const kind = el("select", { name: "type" },
    el("option", { value: "image" }, "Images"), el("option", { value: "file" }, "Files (URLs)"));
  const urls = el("textarea", { name: "urls", rows: 2, required: true, class: "mono", spellcheck: "false",
    placeholder: "registry.example.com/library/alpine:3.20" });
  const platform = el("input", { name: "platform", value: "linux/amd64", spellcheck: "false" });
  const platformField = field("Platform", platform, "os/arch[/variant], or all for every platform of an index");
  kind.addEventListener("change", () => {
    platformField.hidden = kind.value !== "image";
  });
  const scopeSelect = el("select", { name: "scope" },
    Object.entries(SCOPES).map(([value, text]) => el("option", { value }, text)));
  const clusterBoxes = clusters.map((c) => el("input", { type: "checkbox", name: "cluster", value: c.id, id: `job-cluster-${c.id}` }));
  const username = el("input", { name: "username", autocomplete: "off", spellcheck: "false" });
  const password = el("input", { name: "password", type: "password", autocomplete: "new-password" });
  const status = el("div", { "aria-live": "polite" });
  const forgetCredentials = () => {
    username.value = "";
    password.value = "";
  };
  const form = el("form", { class: "card", id: "job-form", onsubmit: async (event) => {
    event.preventDefault();
    fill(status, el("p", { class: "loading" }, "Submitting…"));
    const ids = clusterBoxes.filter((b) => b.checked).map((b) => Number(b.value));
    const args = {
      type: kind.value,
      urls: urls.value.split("\n").map((line) => line.trim()).filter(Boolean),
      scope: scopeSelect.value,
    };
    if (kind.value === "image") args.platform = platform.value.trim();
    if (username.value || password.value) {
      args.username = username.value;
      args.password = password.value;
    }
    try {
      const job = await api("POST", JOBS, { type: "preheat", args, scheduler_cluster_ids: ids.length ? ids : null });
      forgetCredentials();
      notice(`Preheat job #${job.id} created`);
      navigate(`jobs/${job.id}`);
    } catch (error) {
      // Refused: the person fixes the form and sends again (credentials included, once more).
      fill(status, errorBox(error, "Job not created"));
    }
  } },
  el("fieldset", { disabled: !session.canWrite },
    el("legend", {}, "What to preheat"),
    field("Kind", kind),
    field("Images or URLs", urls, "one per line: an image reference (host/repository:tag or @sha256:…), or a file's URL"),
    platformField,
    field("Scope", scopeSelect)),
  el("fieldset", { disabled: !session.canWrite },
    el("legend", {}, "Clusters (none ticked: every cluster)"),
    clusterBoxes.length ? clusterBoxes.map((box, i) => el("div", { class: "field check" }, box,
      el("label", { for: box.id }, clusters[i].name))) : el("p", { class: "muted" }, "No clusters.")),
  el("fieldset", { disabled: !session.canWrite },
    el("legend", {}, "Registry credentials (optional)"),
    el("p", { class: "hint" }, "Sent once with the job and never shown again, here or in the API. The manager keeps them sealed until the job has ended."),
    field("Username", username), field("Password", password)),
  el("div", { class: "actions" }, writeSubmit("Start preheat", { id: "start-job" })),
  status);
  fill(root, heading("New preheat job"), readOnlyNote(), form);
}

function hostResult(blob, host) {
  const running = host.state === "running" || host.state === "pending";
  return el("li", { class: "host-result", dataset: { host: host.host, state: host.state } },
    badge(host.state), " ", host.host, host.ip ? ` (${host.ip})` : "",
    running && blob.content_length ? ` · ${bytes(host.bytes_done)} of ${bytes(blob.content_length)}` : "",
    host.attempts > 1 ? ` · attempt ${host.attempts}` : "",
    host.description ? el("span", { class: "muted" }, ` — ${host.description}`) : "");
}

function shortDigest(blob) {
  const name = blob.digest || blob.url;
  return el("code", { title: blob.url }, name.startsWith("sha256:") ? name.slice(0, 19) + "…" : name);
}

export async function show(root, { params, scope }) {
  const id = encodeURIComponent(params.id);
  const clusters = await all("/api/v1/clusters");
  const clusterName = new Map(clusters.map((c) => [c.id, c.name]));
  const status = el("div", { "aria-live": "polite" });
  const body = el("div", { id: "job-progress" });
  let timer = null;
  const cancel = confirmedButton("Cancel job", {
    title: `Cancel preheat job #${params.id}?`,
    text: "What is preheated already stays in the caches; the rest is not fetched.",
    action: "Cancel job",
  }, async () => {
    await api("POST", `${JOBS}/${id}/cancel`);
    notice(`Job #${params.id} cancelled`);
    clearTimeout(timer);
    await load();
  }, status, "Not cancelled", { class: "danger", id: "cancel-job" });

  const draw = (job) => {
    const s = summary(job);
    const args = job.args || {};
    const clusterIds = Array.isArray(job.scheduler_cluster_ids) ? job.scheduler_cluster_ids : [];
    const clustersText = clusterIds.length ? clusterIds.map((c) => clusterName.get(c) || `#${c}`).join(", ") : "every cluster";
    cancel.hidden = s.ended;
    fill(body,
      el("dl", { class: "facts" },
        el("dt", {}, args.type === "file" ? "Files" : "Images"), el("dd", { class: "mono wrap" }, s.urls.join(", ")),
        args.platform ? [el("dt", {}, "Platform"), el("dd", {}, args.platform)] : null,
        el("dt", {}, "Scope"), el("dd", {}, SCOPES[args.scope] || args.scope || "—"),
        el("dt", {}, "Clusters"), el("dd", {}, clustersText),
        el("dt", {}, "Credentials"), el("dd", {}, args.credentials ? "given (never shown)" : "none",
          args.header_names?.length ? `; headers ${args.header_names.join(", ")}` : ""),
        el("dt", {}, "Created"), el("dd", {}, timeAgo(job.created_at), job.created_by ? ` by ${job.created_by}` : ""),
        el("dt", {}, "Started"), el("dd", {}, timeAgo(job.started_at, "not yet"), job.worker ? ` on ${job.worker}` : ""),
        el("dt", {}, "Ended"), el("dd", {}, timeAgo(job.finished_at, "not yet"))),
      job.error ? errorBox({ message: job.error }, job.state === "cancelled" ? "Cancelled" : "The job failed") : null,
      el("div", { class: "stats" },
        el("div", { class: "stat" }, el("b", { id: "job-state" }, job.state.toUpperCase()), el("span", {}, "state")),
        el("div", { class: "stat" }, el("b", { id: "job-layers" }, `${s.blobsDone ?? 0} / ${s.blobsTotal ?? 0}`), el("span", {}, "layers done")),
        el("div", { class: "stat" }, el("b", { id: "job-bytes" }, `${bytes(s.bytesDone)} / ${bytes(s.bytesTotal)}`), el("span", {}, "bytes, all hosts")),
        el("div", { class: "stat" }, el("b", {}, `${s.tasksDone} / ${s.tasksTotal}`),
          el("span", {}, `host tasks${s.tasksFailed ? `, ${s.tasksFailed} failed` : ""}`))),
      progressBar(s.bytesDone, s.bytesTotal, "bytes preheated"),
      job.images?.length ? el("p", {}, "Resolved to ", el("span", { class: "mono wrap" }, job.images.join(", "))) : null,
      el("h2", {}, "Layers"),
      table("Layers and their hosts", [
        { title: "Layer", cell: shortDigest },
        { title: "Size", cell: (b) => bytes(b.content_length), class: "num" },
        { title: "State", cell: (b) => badge(b.state) },
        { title: "Hosts", cell: (b) => el("ul", { class: "plain" }, b.hosts.map((h) => hostResult(b, h))) },
      ], job.blobs || [], s.ended ? "The job fetched no layer." : "Resolving the image…"));
  };

  const load = async () => {
    try {
      const job = await api("GET", `${JOBS}/${id}`);
      fill(status);
      draw(job);
      timer = ENDED.has(job.state) ? null : setTimeout(load, 1000);
    } catch (error) {
      fill(status, errorBox(error, "Cannot read the job"));
      // A job that does not exist stays missing; anything else may pass.
      timer = error.status === 404 ? null : setTimeout(load, 5000);
    }
  };
  scope.onLeave(() => clearTimeout(timer));
  fill(root, heading(`Preheat job #${params.id}`, cancel), readOnlyNote(), status, body);
  await load();
}
