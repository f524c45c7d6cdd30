// tokens.js — personal access tokens (for people and scripts) and join tokens (for nodes):
// create (the secret is shown once, here, and never again), list, revoke.

import { all, api, query } from "./api.js";
import { confirmedButton, readOnlyNote, session, writeSubmit } from "./session.js";
import { badge, el, errorBox, field, heading, notice, pager, table, timeAgo, fill } from "./ui.js";

// The secret of a token just made: shown in this box only. Nothing keeps it: leaving the page
// loses it, as the API's list never returns it again.
function secretBox(kind, secret) {
  const input = el("input", { readonly: true, value: secret, class: "mono secret", id: "new-secret",
    "aria-label": `The new ${kind}`, spellcheck: "false" });
  const copied = el("span", { "aria-live": "polite" });
  return el("div", { class: "secret-box", role: "region", "aria-label": `New ${kind}` },
    el("p", {}, el("strong", {}, `Copy this ${kind} now: it is not shown again.`)),
    el("div", { class: "inline" }, input,
      el("button", { type: "button", class: "secondary", onclick: async () => {
        input.select();
        try {
          await navigator.clipboard.writeText(secret);
          copied.textContent = "Copied.";
        } catch {
          copied.textContent = "Selected: press Ctrl+C to copy.";
        }
      } }, "Copy")),
    copied);
}

function revokeButton(what, path, name, status, after) {
  return confirmedButton("Revoke", {
    title: `Revoke ${what} ${name}?`,
    text: `Anything using this ${what} is refused from now on.`,
    action: "Revoke",
  }, async () => {
    await api("DELETE", path);
    notice(`${what[0].toUpperCase() + what.slice(1)} ${name} revoked`);
    after();
  }, status, `${name} not revoked`, { class: "danger small", "aria-label": `Revoke ${what} ${name}` });
}

export async function list(root, { query: params, navigate }) {
  const patPage = Number(params.get("page") || 1);
  const joinPage = Number(params.get("join_page") || 1);
  const [users, clusters, pats, joins] = await Promise.all([
    all("/api/v1/users"),
    all("/api/v1/clusters"),
    api("GET", "/api/v1/personal-access-tokens" + query({ page: patPage, per_page: 50 })),
    api("GET", "/api/v1/join-tokens" + query({ page: joinPage, per_page: 50 })),
  ]);
  const userName = new Map(users.map((u) => [u.id, u.name]));
  const clusterName = new Map(clusters.map((c) => [c.id, c.name]));
  const status = el("div", { "aria-live": "polite" });
  const fresh = el("div", { "aria-live": "polite", id: "fresh-secret" });

  // ---- personal access tokens ----
  const patName = el("input", { name: "name", maxlength: 128, placeholder: "ci-reader" });
  const patUser = el("select", { name: "user_id" }, users.map((u) =>
    el("option", { value: u.id, selected: session.user && u.id === session.user.id }, `${u.name} (${u.role})`)));
  const patWrite = el("input", { type: "checkbox", name: "write", id: "pat-write" });
  const patExpires = el("select", { name: "expires_in" },
    [["", "Never"], ["1h", "1 hour"], ["24h", "1 day"], ["720h", "30 days"], ["2160h", "90 days"]]
      .map(([value, text]) => el("option", { value, selected: value === "2160h" }, text)));
  // Creates a token (POST path with what body() returns): its secret shown once, then the
  // lists again.
  async function create(event, what, path, body, nameInput, failure) {
    event.preventDefault();
    fill(status);
    try {
      const made = await api("POST", path, body());
      fill(fresh, secretBox(what, made.token));
      nameInput.value = "";
      await refreshLists();
    } catch (error) {
      fill(status, errorBox(error, failure));
    }
  }

  const patForm = el("form", { class: "card compact", id: "pat-form", onsubmit: (event) =>
    create(event, "personal access token", "/api/v1/personal-access-tokens", () => {
      const body = { name: patName.value.trim(), user_id: Number(patUser.value), write: patWrite.checked };
      if (patExpires.value) body.expires_in = patExpires.value;
      return body;
    }, patName, "Token not created") },
  el("fieldset", { disabled: !session.canWrite },
    el("legend", {}, "New personal access token"),
    field("Name", patName), field("User", patUser), field("Expires", patExpires),
    el("div", { class: "field check" }, patWrite, el("label", { for: "pat-write" }, "May change things (admin users only)"))),
  el("div", { class: "actions" }, writeSubmit("Create token", { id: "create-pat" })));

  // ---- join tokens ----
  const joinName = el("input", { name: "name", maxlength: 128, placeholder: "rollout" });
  const joinCluster = el("select", { name: "cluster_id" }, el("option", { value: "" }, "Scopes decide"),
    clusters.map((c) => el("option", { value: c.id }, c.name)));
  const joinExpires = el("select", { name: "expires_in" },
    [["1h", "1 hour"], ["24h", "1 day"], ["168h", "7 days"], ["", "Never"]]
      .map(([value, text]) => el("option", { value, selected: value === "24h" }, text)));
  const joinUses = el("input", { type: "number", min: 0, name: "max_uses", placeholder: "unlimited" });
  const joinForm = el("form", { class: "card compact", id: "join-form", onsubmit: (event) =>
    create(event, "join token", "/api/v1/join-tokens", () => {
      const body = { name: joinName.value.trim() };
      if (joinCluster.value) body.cluster_id = Number(joinCluster.value);
      if (joinExpires.value) body.expires_in = joinExpires.value;
      if (joinUses.value) body.max_uses = Number(joinUses.value);
      return body;
    }, joinName, "Join token not created") },
  el("fieldset", { disabled: !session.canWrite },
    el("legend", {}, "New join token"),
    field("Name", joinName), field("Cluster", joinCluster), field("Expires", joinExpires),
    field("Uses", joinUses, "empty: unlimited")),
  el("div", { class: "actions" }, writeSubmit("Create join token", { id: "create-join" })));

  const patList = el("div");
  const joinList = el("div");
  function drawLists(patAnswer, joinAnswer) {
    fill(patList, table("Personal access tokens", [
      { title: "Name", cell: (t) => t.name || el("span", { class: "muted" }, "unnamed") },
      { title: "Prefix", cell: (t) => el("code", {}, t.prefix + "…") },
      { title: "User", cell: (t) => userName.get(t.user_id) || String(t.user_id) },
      { title: "Access", cell: (t) => (String(t.scopes).includes("write") ? "read, write" : "read-only") },
      { title: "State", cell: (t) => badge(t.state) },
      { title: "Last used", cell: (t) => timeAgo(t.last_used_at) },
      { title: "Expires", cell: (t) => timeAgo(t.expires_at, "never") },
      { title: "", cell: (t) => (t.state === "active" ? revokeButton("token", `/api/v1/personal-access-tokens/${t.id}`, t.name || t.prefix, status, refreshLists) : "") },
    ], patAnswer.items, "No personal access tokens."),
    patAnswer.total > patAnswer.per_page ? pager(patAnswer, "tokens", (p) => navigate("tokens" + query({ page: p, join_page: joinPage }))) : null);
    fill(joinList, table("Join tokens", [
      { title: "Name", cell: (t) => t.name || el("span", { class: "muted" }, "unnamed") },
      { title: "Prefix", cell: (t) => el("code", {}, t.prefix + "…") },
      { title: "Cluster", cell: (t) => (t.cluster_id ? clusterName.get(t.cluster_id) || String(t.cluster_id) : "scopes decide") },
      { title: "Uses", cell: (t) => `${t.use_count}${t.max_uses ? " of " + t.max_uses : ""}`, class: "num" },
      { title: "State", cell: (t) => badge(t.state) },
      { title: "Expires", cell: (t) => timeAgo(t.expires_at, "never") },
      { title: "", cell: (t) => (t.state === "active" ? revokeButton("join token", `/api/v1/join-tokens/${t.id}`, t.name || t.prefix, status, refreshLists) : "") },
    ], joinAnswer.items, "No join tokens."),
    joinAnswer.total > joinAnswer.per_page ? pager(joinAnswer, "join tokens", (p) => navigate("tokens" + query({ page: patPage, join_page: p }))) : null);
  }
  // After a change the lists are read again in place, so a secret just shown stays on screen.
  async function refreshLists() {
    try {
      drawLists(await api("GET", "/api/v1/personal-access-tokens" + query({ page: patPage, per_page: 50 })),
        await api("GET", "/api/v1/join-tokens" + query({ page: joinPage, per_page: 50 })));
    } catch (error) {
      fill(status, errorBox(error, "Cannot list tokens"));
    }
  }
  drawLists(pats, joins);

  fill(root,
    heading("Tokens"),
    readOnlyNote(),
    status,
    fresh,
    el("section", { "aria-labelledby": "pat-title" },
      el("h2", { id: "pat-title" }, "Personal access tokens"),
      el("p", { class: "lead" }, "For people and scripts calling the API (this console too). Read-only tokens see everything and change nothing."),
      patForm, patList),
    el("section", { "aria-labelledby": "join-title" },
      el("h2", { id: "join-title" }, "Join tokens"),
      el("p", { class: "lead" }, "For nodes joining the cluster: a node needs one only for its first join."),
      joinForm, joinList));
}
