// drive.mjs — the console in Debian's headless Chromium, as a person uses it.
//
//     node tests/console/drive.mjs PLAN.json
//
// tests/test_console.py starts the manager and the nodes, writes the plan (the console's URL,
// an admin token, what the test set up) and runs this script; every step is checked in the
// DOM, leaves a screenshot in plan.screenshots, and runs axe-core on the page: a serious or
// critical violation fails the step, and so does any error on the page's console (a script
// error, a refused Content-Security-Policy). The script prints one JSON line per step
// ({"step", "ok", ...}) and a last line {"result": {...}} with what the test checks through
// the API afterwards (the secrets the console showed once, for instance). Exit 0 when every
// step passed.
import { chromium } from "playwright-core";
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { createRequire } from "node:module";

const plan = JSON.parse(fs.readFileSync(process.argv[2], "utf8"));
const require = createRequire(import.meta.url);
const axeSource = fs.readFileSync(require.resolve("axe-core/axe.min.js"), "utf8");
fs.mkdirSync(plan.screenshots, { recursive: true });

const result = {};
const pageErrors = [];
let failed = 0;

const profile = fs.mkdtempSync(path.join(os.tmpdir(), "zfly-chromium-"));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: plan.chromium || "/usr/bin/chromium",
  headless: true,
  viewport: { width: 1280, height: 800 },
  args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"],
});
const page = context.pages()[0] || await context.newPage();
page.setDefaultTimeout(plan.timeout_ms || 20000);
page.on("console", (message) => {
  // An API error answer is the page's to show in words (each step checks it does); anything
  // else on the console (a script error, a CSP refusal) is a failure.
  if (message.type() === "error" && !/^Failed to load resource: the server responded with a status of (4\d\d|503)/.test(message.text())) {
    pageErrors.push(message.text());
  }
});
page.on("pageerror", (error) => pageErrors.push(String(error)));
// A request that got no answer at all (not one a navigation cut short) is a failure too.
page.on("requestfailed", (request) => {
  const why = request.failure()?.errorText || "";
  if (!why.includes("ERR_ABORTED")) pageErrors.push(`request failed: ${request.method()} ${request.url()}: ${why}`);
});

// axe-core through the DevTools protocol (page.evaluate is not subject to the page's CSP).
async function accessibility(name) {
  await page.evaluate(axeSource + "\n;0");
  const answer = await page.evaluate(async () => {
    const run = await window.axe.run(document, { resultTypes: ["violations"] });
    return run.violations.map((v) => ({ id: v.id, impact: v.impact, help: v.help,
      nodes: v.nodes.slice(0, 3).map((n) => n.target.join(" ")) }));
  });
  const serious = answer.filter((v) => v.impact === "serious" || v.impact === "critical");
  assert.deepEqual(serious, [], `${name}: serious accessibility violations`);
  return answer.length;
}

// A page shown in the middle of a step gets the same checks as the page a step ends on: a
// screenshot of its own and axe-core.
const pagesChecked = [];
async function checkPage(name) {
  await page.screenshot({ path: path.join(plan.screenshots, `${name}.png`), fullPage: true });
  await accessibility(name);
  pagesChecked.push(name);
}

async function step(name, body) {
  const started = Date.now();
  pageErrors.length = 0;
  try {
    const details = (await body()) || {};
    await page.screenshot({ path: path.join(plan.screenshots, `${name}.png`), fullPage: true });
    const minor = details.skipAxe ? 0 : await accessibility(name);
    assert.deepEqual(pageErrors, [], `${name}: errors on the page's console`);
    delete details.skipAxe;
    console.log(JSON.stringify({ step: name, ok: true, minor_axe: minor, ms: Date.now() - started, ...details }));
  } catch (error) {
    failed++;
    try {
      await page.screenshot({ path: path.join(plan.screenshots, `${name}-FAILED.png`), fullPage: true });
    } catch { /* the page may be gone */ }
    console.log(JSON.stringify({ step: name, ok: false, error: String(error.stack || error),
      url: page.url(), page_errors: pageErrors.slice(0, 10) }));
  }
}

const base = plan.url.replace(/\/$/, "");
const main = page.locator("main");
const text = async (locator) => (await locator.textContent()).trim();

// Opens a page of the console as a logged-in person (the login page would fail the wait).
async function go(hash) {
  await page.goto(`${base}/console/#/${hash}`);
  await page.locator("main h1").first().waitFor();
  await page.locator("#who").waitFor();
}

async function login(token) {
  await page.goto(`${base}/console/`);
  await page.getByLabel("Personal access token").fill(token);
  await page.getByRole("button", { name: "Log in" }).click();
  await page.locator("#who").waitFor({ state: "visible" });
}

async function logout() {
  await page.getByRole("button", { name: "Log out" }).click();
  await page.getByRole("heading", { name: "Log in to the zfly console" }).waitFor();
  assert.equal(await page.evaluate(() => sessionStorage.length), 0); // the token is gone
}

// ---- the steps ----------------------------------------------------------------------------

await step("01-login", async () => {
  await page.goto(`${base}/`); // redirected to /console/
  assert.match(page.url(), /\/console\/$/);
  await page.getByRole("heading", { name: "Log in to the zfly console" }).waitFor();
  // Nobody is logged in: no navigation, no "Log out".
  assert.ok(!(await page.locator("#who").isVisible()) && !(await page.locator("#nav").isVisible()));
  await page.getByLabel("Personal access token").fill("zfp_" + "0".repeat(48));
  await page.getByRole("button", { name: "Log in" }).click();
  const alert = page.getByRole("alert");
  await alert.waitFor();
  assert.match(await text(alert), /Cannot log in: the bearer token is not valid/);
  pageErrors.length = 0; // the 401 itself is logged by Chromium as a failed resource
});

await step("02-clusters", async () => {
  await login(plan.admin_token);
  assert.match(await text(page.locator("#who-name")), /^admin \(can change things\)$/);
  await page.getByRole("heading", { name: "Clusters" }).waitFor();
  const row = main.locator("tbody tr", { hasText: "default" });
  await row.waitFor();
  assert.equal(await text(row.locator("td").nth(3)), String(plan.default_hosts));
  const when = main.locator("time").first();
  assert.match(await when.getAttribute("title"), /\d/); // the exact time on hover
  assert.match(await text(when), /ago|just now/);
  // The token is held for this tab's session: a reload keeps it, and it is not in a cookie
  // or localStorage.
  await page.reload();
  await page.getByRole("heading", { name: "Clusters" }).waitFor();
  assert.match(await text(page.locator("#who-name")), /^admin /);
  const stored = await page.evaluate(() => ({ session: sessionStorage.length, local: localStorage.length, cookie: document.cookie }));
  assert.deepEqual(stored, { session: 1, local: 0, cookie: "" });
});

await step("03-cluster-created", async () => {
  await page.getByRole("button", { name: "New cluster" }).click();
  await page.getByRole("heading", { name: "New cluster" }).waitFor();
  await page.getByLabel("Name", { exact: true }).fill("eu-west");
  await page.getByLabel("Description").fill("Frankfurt racks");
  await page.getByLabel("IDC").fill("fra1|fra2");
  await page.getByLabel("CIDRs").fill("10.9.0.0/16\n10.10.0.0/16");
  await page.getByLabel("Hostnames").fill("^eu-");
  await page.getByLabel("JSON handed to the cluster's nodes").fill("{not json");
  await page.getByRole("button", { name: "Create cluster" }).click();
  assert.match(await text(page.getByRole("alert")), /Client config is not valid JSON/);
  await checkPage("03a-cluster-new");
  await page.getByLabel("JSON handed to the cluster's nodes").fill('{"refresh": "60s"}');
  await page.getByRole("button", { name: "Create cluster" }).click();
  await page.getByRole("heading", { name: "Cluster eu-west" }).waitFor();
  result.cluster_id = Number(page.url().match(/clusters\/(\d+)/)[1]);
  // Edit its scopes (one CIDR less, a location more) and its client config.
  await page.getByLabel("CIDRs").fill("10.9.0.0/16");
  await page.getByLabel("Location").fill("eu|de");
  assert.deepEqual(JSON.parse(await page.getByLabel("JSON handed to the cluster's nodes").inputValue()), { refresh: "60s" });
  await page.getByLabel("JSON handed to the cluster's nodes").fill('{"refresh": "30s"}');
  await page.getByRole("button", { name: "Save changes" }).click();
  await page.locator("#notice.shown", { hasText: "Cluster eu-west saved" }).waitFor();
  await page.getByLabel("Location").and(page.locator("[value='eu|de']")).waitFor();
  await checkPage("03b-cluster-edit");
  await go("clusters");
  await main.locator("tbody tr", { hasText: "eu-west" }).waitFor();
  assert.match(await text(main.locator("tbody tr", { hasText: "eu-west" })), /IDC fra1\|fra2; location eu\|de; CIDR 10\.9\.0\.0\/16; hostname \^eu-/);
  return { cluster_id: result.cluster_id };
});

await step("04-cluster-delete", async () => {
  // The default cluster cannot go: the manager says why, in words.
  await main.getByRole("link", { name: "default" }).click();
  await page.getByRole("heading", { name: "Cluster default" }).waitFor();
  await page.getByRole("button", { name: "Delete cluster" }).click();
  await page.getByRole("dialog").getByRole("button", { name: "Delete" }).click();
  assert.match(await text(page.getByRole("alert")), /Not deleted: .*default/);
  // A cluster made to go away: confirm, and it is gone from the list.
  await go("clusters/new");
  await page.getByLabel("Name", { exact: true }).fill("short-lived");
  await page.getByRole("button", { name: "Create cluster" }).click();
  await page.getByRole("heading", { name: "Cluster short-lived" }).waitFor();
  await page.getByRole("button", { name: "Delete cluster" }).click();
  const dialog = page.getByRole("dialog");
  assert.match(await text(dialog), /Delete cluster short-lived\?/);
  await dialog.getByRole("button", { name: "Cancel" }).click();
  await page.getByRole("heading", { name: "Cluster short-lived" }).waitFor();
  await page.getByRole("button", { name: "Delete cluster" }).click();
  await dialog.getByRole("button", { name: "Delete" }).click();
  await page.getByRole("heading", { name: "Clusters" }).waitFor();
  await main.locator("tbody tr", { hasText: "eu-west" }).waitFor();
  assert.equal(await main.locator("tbody tr", { hasText: "short-lived" }).count(), 0);
});

await step("05-hosts-10000", async () => {
  await go("hosts");
  await main.locator(".pager-text").waitFor();
  const pagerText = await text(main.locator(".pager-text"));
  assert.match(pagerText, new RegExp(`Page 1 of ${Math.ceil(plan.host_total / 50)} \\(${plan.host_total.toLocaleString("en-US")} hosts\\)`));
  assert.equal(await main.locator("tbody tr").count(), 50); // one page in the DOM, not 10,000
  await page.getByRole("button", { name: "Last »" }).click();
  await main.locator(".pager-text", { hasText: `Page ${Math.ceil(plan.host_total / 50)} of` }).waitFor();
  // The filter: part of a name, on the server.
  await page.getByLabel("Name").fill(plan.filter_name);
  await page.getByRole("button", { name: "Filter" }).click();
  await main.locator(".pager-text", { hasText: `(${plan.filter_matches} hosts)` }).waitFor();
  const row = main.locator("tbody tr", { hasText: plan.revoke_host });
  await row.waitFor();
  assert.match(await text(row), /active/);
  assert.match(await text(row), new RegExp(plan.revoke_label));
  assert.ok((await text(row)).includes(plan.revoke_cache), await text(row));
  assert.match(await text(row), /ago|just now/);
  // A real edge's cache, as its storage measured it before its last join.
  await go(`hosts?name=${plan.edge_host}`);
  const edge = main.locator("tbody tr", { hasText: plan.edge_host });
  await edge.waitFor();
  assert.ok((await text(edge)).includes(plan.edge_cache), await text(edge));
  await go(`hosts?name=${plan.filter_name}`);
  await main.locator("tbody tr", { hasText: plan.revoke_host }).waitFor();
});

await step("06-host-revoked", async () => {
  const row = main.locator("tbody tr", { hasText: plan.revoke_host });
  await row.getByRole("button", { name: `Revoke ${plan.revoke_host}` }).click();
  await page.getByRole("dialog").getByRole("button", { name: "Revoke" }).click();
  await main.locator("tbody tr", { hasText: plan.revoke_host }).locator(".badge-revoked").waitFor();
});

await step("07-schedulers", async () => {
  await go("schedulers");
  const scheduler = main.locator("section").first().locator("tbody tr", { hasText: plan.scheduler });
  await scheduler.waitFor();
  assert.match(await text(scheduler), /active/);
  assert.match(await text(scheduler), /ago|just now/);
  const seed = main.locator("section").nth(1).locator("tbody tr", { hasText: plan.seed });
  await seed.waitFor();
  assert.match(await text(seed), /active/);
});

await step("08-swarm", async () => {
  await go("swarm");
  await page.getByLabel("Task", { exact: true }).fill(plan.task_id);
  await page.getByRole("button", { name: "Show swarm" }).click();
  const picture = main.locator("#swarm-picture svg");
  await picture.waitFor();
  // Every peer is drawn; the origin sent bytes to the seed, and peers got bytes from peers.
  for (const host of plan.swarm_hosts) await picture.locator(`g.node[data-host="${host}"]`).waitFor();
  const edges = await picture.locator("path.edge").evaluateAll((paths) =>
    paths.map((p) => ({ from: p.dataset.from, to: p.dataset.to, bytes: Number(p.dataset.bytes) })));
  const fromOrigin = edges.filter((e) => e.from === "source");
  assert.ok(fromOrigin.length >= 1, JSON.stringify(edges));
  assert.ok(edges.filter((e) => e.from !== "source").some((e) => e.bytes > 0), JSON.stringify(edges));
  result.swarm_edges = edges;
  // The bytes are written on the edges of the picture, not only in its data.
  const labels = await picture.locator("text.edge-label").allTextContents();
  assert.ok(labels.length >= 1 && labels.every((l) => /^\d+(\.\d)? (B|KiB|MiB|GiB)$/.test(l)), JSON.stringify(labels));
  await main.locator(".stat", { hasText: "peers finished" }).waitFor();
  return { edges: edges.length };
});

await step("09-preheat-form", async () => {
  await go("jobs");
  await main.getByText("No preheat jobs yet.").waitFor();
  await checkPage("09a-jobs-empty");
  await page.getByRole("button", { name: "New preheat job" }).click();
  await page.getByRole("heading", { name: "New preheat job" }).waitFor();
  // A mistake comes back from the API in words, and nothing is created.
  await page.getByLabel("Images or URLs").fill(plan.preheat.image);
  await page.getByLabel("Platform").fill("linux");
  await page.getByRole("button", { name: "Start preheat" }).click();
  assert.match(await text(page.getByRole("alert")), /Job not created: .*platform must be os\/arch/);
});

await step("10-preheat-success", async () => {
  await page.getByLabel("Platform").fill("linux/amd64");
  await page.getByLabel("Scope").selectOption("all_seed_peers");
  await page.getByLabel(plan.preheat.cluster, { exact: true }).check();
  await page.getByLabel("Username").fill(plan.preheat.username);
  await page.getByLabel("Password").fill(plan.preheat.password);
  await page.getByRole("button", { name: "Start preheat" }).click();
  await page.getByRole("heading", { name: /^Preheat job #\d+$/ }).waitFor();
  result.success_job = Number(page.url().match(/jobs\/(\d+)/)[1]);
  // The registry's token realm holds the job (test_console.py): the page shows it going,
  // with no layer yet; then the test lets it go, and the page follows it to its end by
  // itself, without a navigation.
  const jobUrl = page.url();
  await main.locator("#job-state", { hasText: /^(PENDING|RUNNING)$/ }).waitFor();
  await main.getByText("Resolving the image…").waitFor();
  assert.ok(await page.locator("#cancel-job").isVisible());
  await checkPage("10a-job-running");
  console.log(JSON.stringify({ event: "job-shown-running", job: result.success_job }));
  await main.locator("#job-state", { hasText: /^(SUCCESS|FAILURE|CANCELLED)$/ }).waitFor({ timeout: 3 * (plan.timeout_ms || 30000) });
  assert.equal(await text(main.locator("#job-state")), "SUCCESS", await text(main));
  assert.equal(page.url(), jobUrl);
  const layerRows = main.locator("tbody tr");
  assert.ok((await layerRows.count()) >= plan.preheat.layers.length);
  for (const digest of plan.preheat.layers) {
    const row = main.locator("tbody tr", { has: page.locator(`code[title*="${digest}"]`) });
    await row.waitFor();
    assert.match(await text(row), /success/);
    const host = row.locator(`li.host-result[data-host="${plan.preheat.seed}"]`);
    assert.equal(await host.getAttribute("data-state"), "success");
  }
  const layers = (await text(main.locator("#job-layers"))).split(" / ");
  assert.equal(layers[0], layers[1]);
  const bytesDone = (await text(main.locator("#job-bytes"))).split(" / ");
  assert.equal(bytesDone[0], bytesDone[1]);
  assert.match(await text(main.locator(".facts")), /Credentials\s*given \(never shown\)/);
  assert.equal(await page.locator("#cancel-job").isVisible(), false); // an ended job has no Cancel
  // The password went once: it is nowhere on the page, and the form is gone.
  assert.ok(!(await page.content()).includes(plan.preheat.password));
  await checkPage("10b-job-page");
  // The list: the job with its state and full progress.
  await go("jobs");
  const row = main.locator("tbody tr", { hasText: `#${result.success_job}` });
  await row.waitFor();
  assert.match(await text(row), /success/);
  assert.equal(await row.getByRole("progressbar").getAttribute("aria-valuenow"), "100");
  return { job: result.success_job };
});

await step("11-preheat-cancel", async () => {
  await go("jobs/new");
  await page.getByLabel("Images or URLs").fill(plan.preheat.silent);
  await page.getByRole("button", { name: "Start preheat" }).click();
  await page.getByRole("heading", { name: /^Preheat job #\d+$/ }).waitFor();
  result.cancelled_job = Number(page.url().match(/jobs\/(\d+)/)[1]);
  await main.locator("#job-state", { hasText: /^(PENDING|RUNNING)$/ }).waitFor();
  await page.getByRole("button", { name: "Cancel job" }).click();
  const dialog = page.getByRole("dialog");
  assert.match(await text(dialog), new RegExp(`Cancel preheat job #${result.cancelled_job}\\?`));
  await dialog.getByRole("button", { name: "Cancel job" }).click();
  await main.locator("#job-state", { hasText: "CANCELLED" }).waitFor();
  assert.match(await text(page.getByRole("alert")), /Cancelled: .*cancelled by admin/);
  await go("jobs?state=cancelled");
  await main.locator("tbody tr", { hasText: `#${result.cancelled_job}` }).waitFor();
  assert.equal(await main.locator("tbody tr").count(), 1);
});

await step("12-tokens", async () => {
  await go("tokens");
  // A read-only token for later: made here, shown once.
  await page.getByLabel("Name").first().fill("viewer");
  await page.getByRole("button", { name: "Create token" }).click();
  const secret = page.locator("#new-secret");
  await secret.waitFor();
  result.readonly_token = await secret.inputValue();
  assert.match(result.readonly_token, /^zfp_[0-9a-f]{48}$/);
  const viewerRow = main.locator("section").first().locator("tbody tr", { hasText: "viewer" });
  await viewerRow.waitFor();
  assert.match(await text(viewerRow), /read-only/);
  // The list never shows the secret again, and leaving the page forgets it.
  assert.ok(!(await text(main.locator("section").first())).includes(result.readonly_token));
  // A token to revoke.
  await page.getByLabel("Name").first().fill("to-revoke");
  await page.getByRole("button", { name: "Create token" }).click();
  await page.locator("#new-secret").and(page.locator(`:not([value="${result.readonly_token}"])`)).waitFor();
  result.revoked_token = await page.locator("#new-secret").inputValue();
  const row = main.locator("section").first().locator("tbody tr", { hasText: "to-revoke" });
  await row.getByRole("button", { name: "Revoke token to-revoke" }).click();
  await page.getByRole("dialog").getByRole("button", { name: "Revoke" }).click();
  await main.locator("section").first().locator("tbody tr", { hasText: "to-revoke" }).locator(".badge-revoked").waitFor();
  // A join token for nodes: shown once too, then revoked.
  const joins = main.locator("section").nth(1);
  await joins.getByLabel("Name").fill("rollout");
  await page.getByRole("button", { name: "Create join token" }).click();
  await page.locator("#new-secret[value^='zfj_']").waitFor();
  result.join_token = await page.locator("#new-secret").inputValue();
  assert.match(result.join_token, /^zfj_[0-9a-f]{48}$/);
  await joins.locator("tbody tr", { hasText: "rollout" }).getByRole("button", { name: "Revoke join token rollout" }).click();
  await page.getByRole("dialog").getByRole("button", { name: "Revoke" }).click();
  await joins.locator("tbody tr", { hasText: "rollout" }).locator(".badge-revoked").waitFor();
  await go("clusters");
  await go("tokens");
  assert.equal(await page.locator("#new-secret").count(), 0);
});

await step("13-phone", async () => {
  await page.setViewportSize({ width: 390, height: 844 });
  for (const where of ["clusters", `clusters/${result.cluster_id}`, "hosts", "schedulers",
    "swarm/" + plan.task_id, "jobs", "jobs/new", `jobs/${result.success_job}`, "tokens"]) {
    await go(where);
    await main.locator("table, .empty, .error, svg, form").first().waitFor();
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok(overflow <= 0, `${where}: the page is ${overflow}px wider than the phone`);
    await checkPage(`13-phone-${where.replace(/\/(sha256:)?/g, "-").slice(0, 40)}`);
  }
  await go("hosts");
  await page.setViewportSize({ width: 1280, height: 800 });
});

await step("14-readonly", async () => {
  await logout();
  await login(result.readonly_token);
  assert.match(await text(page.locator("#who-name")), /\(read-only\)$/);
  await page.getByRole("heading", { name: "Clusters" }).waitFor();
  assert.ok(await page.getByRole("button", { name: "New cluster" }).isDisabled());
  await main.locator(".readonly-note").waitFor();
  // It sees everything...
  await main.getByRole("link", { name: "eu-west" }).click();
  await page.getByRole("heading", { name: "Cluster eu-west" }).waitFor();
  assert.equal(await page.getByLabel("CIDRs").inputValue(), "10.9.0.0/16");
  // ...and changes nothing: the controls are disabled,
  assert.ok(await page.getByRole("button", { name: "Delete cluster" }).isDisabled());
  assert.ok(await page.getByRole("button", { name: "Save changes" }).isDisabled());
  assert.ok(await page.getByLabel("CIDRs").isDisabled());
  await go("hosts");
  await main.locator("tbody tr").first().waitFor();
  const revokes = main.getByRole("button", { name: /^Revoke / });
  assert.ok((await revokes.count()) > 0);
  for (const button of await revokes.all()) assert.ok(await button.isDisabled());
  await go("tokens");
  assert.ok(await page.getByRole("button", { name: "Create token" }).isDisabled());
  await go("jobs");
  await main.locator("tbody tr", { hasText: `#${result.success_job}` }).waitFor();
  assert.ok(await page.getByRole("button", { name: "New preheat job" }).isDisabled());
  await go("jobs/new");
  assert.ok(await page.getByRole("button", { name: "Start preheat" }).isDisabled());
  assert.ok(await page.getByLabel("Password").isDisabled());
  await go(`jobs/${result.success_job}`);
  await main.locator("#job-state", { hasText: "SUCCESS" }).waitFor();
  await go("schedulers");
  await main.locator("tbody tr", { hasText: plan.scheduler }).waitFor();
  await go("swarm/" + plan.task_id);
  await main.locator("#swarm-picture svg").waitFor();
  // ...and the API refuses anyway, whatever the page does.
  const refused = await page.evaluate(async (token) => {
    const response = await fetch("/api/v1/clusters", { method: "POST", headers: {
      Authorization: `Bearer ${token}`, "Content-Type": "application/json" }, body: JSON.stringify({ name: "sneaky" }) });
    return { status: response.status, body: await response.json() };
  }, result.readonly_token);
  assert.equal(refused.status, 403);
  assert.match(refused.body.message, /may only read/);
  pageErrors.length = 0;
  await go("clusters");
});

await context.close();
fs.rmSync(profile, { recursive: true, force: true });
result.pages_checked = pagesChecked;
console.log(JSON.stringify({ result }));
process.exit(failed ? 1 : 0);
