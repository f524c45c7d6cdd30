// clusters.js — scheduler clusters: the list, a form to create one, and a page to change its
// scopes and client config or delete it (GET/POST/PATCH/DELETE /api/v1/clusters).

import { api, query } from "./api.js";
import { confirmedButton, readOnlyNote, session, writeButton, writeSubmit } from "./session.js";
import { badge, el, errorBox, field, heading, notice, pager, table, timeAgo, fill } from "./ui.js";

function scopesText(scopes = {}) {
  const parts = [];
  if (scopes.idc) parts.push(`IDC ${scopes.idc}`);
  if (scopes.location) parts.push(`location ${scopes.location}`);
  if (scopes.cidrs?.length) parts.push(`CIDR ${scopes.cidrs.join(", ")}`);
  if (scopes.hostnames?.length) parts.push(`hostname ${scopes.hostnames.join(", ")}`);
  return parts.length ? parts.join("; ") : "none";
}

export async function list(root, { query: params, navigate }) {
  const page = Number(params.get("page") || 1);
  const answer = await api("GET", "/api/v1/clusters" + query({ page, per_page: 50 }));
  // How many hosts each cluster holds: one count per cluster (the list's total).
  const counts = await Promise.all(answer.items.map((c) =>
    api("GET", "/api/v1/hosts" + query({ cluster_id: c.id, state: "active", per_page: 1 }))
      .then((a) => a.total, () => "?")));
  answer.items.forEach((c, i) => (c.hostCount = counts[i]));
  fill(root,
    heading("Clusters", writeButton("New cluster", () => navigate("clusters/new"), { id: "new-cluster" })),
    readOnlyNote(),
    el("p", { class: "lead" }, "Joining hosts are sorted into clusters by their scopes (CIDR, hostname, IDC, location); the default cluster takes the rest."),
    table("Clusters", [
      { title: "Name", cell: (c) => el("a", { href: `#/clusters/${c.id}` }, c.name) },
      { title: "Default", cell: (c) => (c.is_default ? badge("default") : "") },
      { title: "Scopes", cell: (c) => scopesText(c.scopes) },
      { title: "Hosts", cell: (c) => el("a", { href: `#/hosts?cluster_id=${c.id}` }, String(c.hostCount)), class: "num" },
      { title: "Changed", cell: (c) => timeAgo(c.updated_at || c.created_at) },
    ], answer.items, "No clusters yet."),
    answer.total > answer.per_page ? pager(answer, "clusters", (p) => navigate(`clusters?page=${p}`)) : null);
}

// The form shared by create and edit. Returns { form, read } where read() gives the body or
// throws an Error whose message names the field.
function clusterForm(cluster, onSubmit, submitLabel) {
  const scopes = cluster?.scopes || {};
  const name = el("input", { name: "name", required: true, maxlength: 128, value: cluster?.name || "" });
  const description = el("input", { name: "description", maxlength: 512, value: cluster?.description || "" });
  const isDefault = el("input", { type: "checkbox", name: "is_default", checked: !!cluster?.is_default });
  const idc = el("input", { name: "idc", value: scopes.idc || "", placeholder: "fra1|fra2" });
  const location = el("input", { name: "location", value: scopes.location || "", placeholder: "eu|de|fra" });
  const cidrs = el("textarea", { name: "cidrs", rows: 3, placeholder: "10.1.0.0/16" });
  cidrs.value = (scopes.cidrs || []).join("\n");
  const hostnames = el("textarea", { name: "hostnames", rows: 3, placeholder: "^eu-" });
  hostnames.value = (scopes.hostnames || []).join("\n");
  const config = el("textarea", { name: "client_config", rows: 6, class: "mono" });
  config.value = JSON.stringify(cluster?.client_config || {}, null, 2);
  const status = el("div", { "aria-live": "polite" });
  const lines = (text) => text.split("\n").map((s) => s.trim()).filter(Boolean);
  const read = () => {
    let clientConfig;
    try {
      clientConfig = JSON.parse(config.value || "{}");
    } catch (error) {
      throw new Error(`Client config is not valid JSON: ${error.message}`);
    }
    if (typeof clientConfig !== "object" || clientConfig === null || Array.isArray(clientConfig)) {
      throw new Error("Client config must be a JSON object, such as {\"refresh\": \"30s\"}");
    }
    return {
      name: name.value.trim(),
      description: description.value.trim(),
      is_default: isDefault.checked,
      scopes: { idc: idc.value.trim(), location: location.value.trim(), cidrs: lines(cidrs.value), hostnames: lines(hostnames.value) },
      client_config: clientConfig,
    };
  };
  const form = el("form", { class: "card", onsubmit: async (event) => {
    event.preventDefault();
    fill(status);
    try {
      await onSubmit(read());
    } catch (error) {
      fill(status, errorBox(error, "Not saved"));
    }
  } },
  el("fieldset", { disabled: !session.canWrite },
    el("legend", {}, "Cluster"),
    field("Name", name),
    field("Description", description),
    el("div", { class: "field check" }, isDefault, el("label", { for: (isDefault.id = "is-default") }, "Default cluster (takes hosts no scope matches)"))),
  el("fieldset", { disabled: !session.canWrite },
    el("legend", {}, "Scopes"),
    field("IDC", idc, "IDCs separated by |"),
    field("Location", location, "widest first, separated by |"),
    field("CIDRs", cidrs, "one per line"),
    field("Hostnames", hostnames, "POSIX extended regular expressions, one per line")),
  el("fieldset", { disabled: !session.canWrite },
    el("legend", {}, "Client config"),
    field("JSON handed to the cluster's nodes", config)),
  el("div", { class: "actions" }, writeSubmit(submitLabel)),
  status);
  return form;
}

export async function create(root, { navigate }) {
  fill(root, heading("New cluster"), readOnlyNote(),
    clusterForm(null, async (body) => {
      const made = await api("POST", "/api/v1/clusters", body);
      notice(`Cluster ${made.name} created`);
      navigate(`clusters/${made.id}`);
    }, "Create cluster"));
}

export async function edit(root, { params, navigate }) {
  const cluster = await api("GET", `/api/v1/clusters/${encodeURIComponent(params.id)}`);
  const hosts = await api("GET", "/api/v1/hosts" + query({ cluster_id: cluster.id, per_page: 1 }));
  const status = el("div", { "aria-live": "polite" });
  const remove = confirmedButton("Delete cluster", {
    title: `Delete cluster ${cluster.name}?`,
    text: "Its scopes and client config are lost. Only a cluster without hosts that is not the default can be deleted.",
    action: "Delete",
  }, async () => {
    await api("DELETE", `/api/v1/clusters/${cluster.id}`);
    notice(`Cluster ${cluster.name} deleted`);
    navigate("clusters");
  }, status, "Not deleted", { class: "danger", id: "delete-cluster" });
  fill(root,
    heading(`Cluster ${cluster.name}`, remove),
    readOnlyNote(),
    status,
    el("p", { class: "lead" },
      `Id ${cluster.id} · members version ${cluster.members_version ?? "—"} · `,
      el("a", { href: `#/hosts?cluster_id=${cluster.id}` }, `${hosts.total} hosts`), " · created ",
      timeAgo(cluster.created_at), " · changed ", timeAgo(cluster.updated_at)),
    clusterForm(cluster, async (body) => {
      await api("PATCH", `/api/v1/clusters/${cluster.id}`, body);
      notice(`Cluster ${body.name} saved`);
      navigate(`clusters/${cluster.id}`);
    }, "Save changes"));
}
