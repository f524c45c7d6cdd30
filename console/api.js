// api.js — the manager's REST API as the console calls it: the same /api/v1/ endpoints and the
// same bearer token a script uses. The token lives in sessionStorage only (gone when the tab
// closes) and is sent nowhere but this origin.

const TOKEN_KEY = "zfly.token";

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

export function token() {
  return sessionStorage.getItem(TOKEN_KEY) || "";
}

export function setToken(value) {
  if (value) sessionStorage.setItem(TOKEN_KEY, value);
  else sessionStorage.removeItem(TOKEN_KEY);
}

// What each status means to a person, when the answer has no message of its own.
const STATUS_WORDS = {
  400: "The manager refused the request as invalid",
  401: "Your token is not valid any more (unknown, expired or revoked): log in again",
  403: "Your token may only read: this needs a token with write access",
  404: "Not found",
  405: "The manager does not offer this here",
  409: "This conflicts with the current state",
  413: "The request is too large",
  503: "The manager cannot reach its database right now: try again shortly",
};

// Listeners told when the token stops working (any 401), so the app can ask for a new one.
const unauthorizedListeners = [];
export function onUnauthorized(listener) {
  unauthorizedListeners.push(listener);
}

// One call: resolves to the parsed JSON (null for 204), rejects with an ApiError whose message
// is words a person can act on: the manager's own message when it sent one.
export async function api(method, path, body, options = {}) {
  const headers = { Accept: "application/json" };
  const bearer = options.token ?? token();
  if (bearer) headers.Authorization = `Bearer ${bearer}`;
  const init = { method, headers, cache: "no-store", credentials: "omit" };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (error) {
    throw new ApiError(0, "unreachable", `The manager did not answer (${error.message}). Is it running?`);
  }
  const text = await response.text();
  let answer = null;
  if (text) {
    try {
      answer = JSON.parse(text);
    } catch {
      answer = null;
    }
  }
  if (!response.ok) {
    const words = STATUS_WORDS[response.status] || `The manager answered ${response.status}`;
    const message = answer && answer.message ? answer.message : words;
    const error = new ApiError(response.status, answer?.code || "http_" + response.status, message);
    if (response.status === 401 && !options.token) unauthorizedListeners.forEach((f) => f(error));
    throw error;
  }
  return answer;
}

// A query string from an object, skipping empty values.
export function query(params) {
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== "") search.set(key, String(value));
  }
  const text = search.toString();
  return text ? "?" + text : "";
}

// Every item of a paged list, page by page (for small lists such as clusters in a select).
export async function all(path, params = {}) {
  const items = [];
  for (let page = 1; ; page++) {
    const answer = await api("GET", path + query({ ...params, page, per_page: 1000 }));
    items.push(...answer.items);
    if (items.length >= answer.total || answer.items.length === 0) return items;
  }
}
