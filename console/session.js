// session.js — who is logged in: the token's own record (found by its prefix in the token
// list, which any token may read), its user, and whether it may write. Write controls are
// disabled for a read-only token; the API refuses such writes with 403 anyway.

import { all, api, setToken, token } from "./api.js";
import { confirmAction, el, errorBox, fill } from "./ui.js";

export const session = { loggedIn: false, user: null, record: null, canWrite: false };

// Checks the token against the API and learns what it may do. Throws an ApiError (401 for a
// token the manager does not know) so the login form can say why.
export async function login(candidate) {
  await api("GET", "/api/v1/clusters?per_page=1", undefined, { token: candidate });
  setToken(candidate);
  // Lists show each token's first 12 characters ("zfp_" and 8 more): ours is the active one
  // with our prefix. Its scopes say whether it may write.
  const prefix = candidate.slice(0, 12);
  const mine = (await all("/api/v1/personal-access-tokens"))
    .find((t) => t.prefix === prefix && t.state === "active");
  session.record = mine || null;
  session.canWrite = !!mine && String(mine.scopes).split(",").includes("write");
  session.user = mine ? await api("GET", `/api/v1/users/${mine.user_id}`) : null;
  session.loggedIn = true;
  return session;
}

export async function resume() {
  return token() ? login(token()) : null;
}

export function logout() {
  setToken("");
  session.loggedIn = false;
  session.user = null;
  session.record = null;
  session.canWrite = false;
}

const READ_ONLY = "Your token is read-only: this needs a token with write access";

// A button that changes something: disabled, with the reason, for a read-only token.
export function writeButton(label, onclick, attrs = {}) {
  const disabled = !session.canWrite;
  return el("button", {
    type: "button",
    ...attrs,
    onclick,
    disabled,
    title: disabled ? READ_ONLY : attrs.title,
    "aria-disabled": disabled ? "true" : undefined,
  }, label);
}

// A write button for something that cannot be undone: asks first (title, text and the
// confirming action's label in ask), then runs act; act's error shows in status, headed by
// failure.
export function confirmedButton(label, ask, act, status, failure, attrs = {}) {
  return writeButton(label, async () => {
    if (!(await confirmAction(ask.title, ask.text, ask.action))) return;
    try {
      await act();
    } catch (error) {
      fill(status, errorBox(error, failure));
    }
  }, attrs);
}

// A form's submit button, the same way.
export function writeSubmit(label, attrs = {}) {
  return writeButton(label, undefined, { ...attrs, type: "submit" });
}

export function readOnlyNote() {
  return session.canWrite ? null
    : el("p", { class: "readonly-note" }, "You are signed in with a read-only token: you can see everything, and change nothing.");
}
