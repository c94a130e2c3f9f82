// api.js — the one way the page talks to the server: same-origin calls to /explore/api/*, the
// time range of the page URL added to each, the key from sessionStorage sent as a Bearer token,
// the {data, queries, range} envelope unpacked, and errors turned into ApiError with the
// server's message. A 401 asks the user for a key once and retries; when the gateway has an OIDC
// issuer, the same dialog offers "Sign in", whose session lives in an httpOnly cookie the
// browser sends by itself (this script never sees the token).

import { h, rangeParams } from "./dom.js";

export const KEY_STORAGE = "sirius.key";
const BASE = "/explore/api/";

export class ApiError extends Error {
  /** queries: the SQL the failed call ran (a 404 lists the query that found nothing); range: the range searched. */
  constructor(status, message, queries = [], range = null) {
    super(message);
    this.status = status;
    this.queries = queries;
    this.range = range;
  }
}

const AUTH = "/explore/auth/";
let authInfo = null;

/** {login, issuer, user: {name, is_admin} | null}: whether a sign-in is offered and who is signed in (asked once). */
export function authStatus() {
  if (!authInfo) {
    authInfo = fetch(AUTH + "me", { headers: { Accept: "application/json" } })
      .then((r) => (r.ok ? r.json() : { login: false, user: null }))
      .catch(() => ({ login: false, user: null }));
  }
  return authInfo;
}

/** Go through the issuer's sign-in and come back to this page. */
export function signIn() {
  location.assign(`${AUTH}login?return_to=${encodeURIComponent(location.pathname + location.search)}`);
}

/** Forget the session (and a key typed in this tab), then reload. */
export async function signOut() {
  await fetch(AUTH + "logout", { method: "POST" }).catch(() => null);
  try {
    sessionStorage.removeItem(KEY_STORAGE);
  } catch {
    /* storage disabled */
  }
  location.reload();
}

/** The header's account corner: "Sign in", or the signed-in name and "Sign out" (empty without an issuer). */
export function accountElement() {
  const element = h("div.account", { "data-testid": "account" });
  authStatus().then((auth) => {
    if (!auth.login) return;
    if (auth.user) {
      element.append(
        h("span.account-name", { "data-testid": "account-user", title: auth.user.is_admin ? "admin" : "" }, auth.user.name),
        h("button.account-button", { type: "button", "data-testid": "sign-out", onclick: signOut }, "Sign out"),
      );
    } else {
      element.append(h("button.account-button", { type: "button", "data-testid": "sign-in", onclick: signIn }, "Sign in"));
    }
  });
  return element;
}

export function storedKey() {
  try {
    return sessionStorage.getItem(KEY_STORAGE) || "";
  } catch {
    return "";
  }
}

/** Headers to send on an API call (the key, when one is stored). */
export function authHeaders() {
  const key = storedKey();
  return key ? { Authorization: `Bearer ${key}` } : {};
}

/** The URL of an API endpoint with params and the page's time range. */
export function apiUrl(path, params = {}) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries({ ...rangeParams(), ...params })) {
    if (v === undefined || v === null || v === "") continue;
    if (Array.isArray(v)) v.forEach((x) => x !== "" && q.append(k, x));
    else q.set(k, String(v));
  }
  const qs = q.toString();
  return BASE + path + (qs ? `?${qs}` : "");
}

/** The same URL whatever the order of its parameters. */
function canonical(url) {
  const u = new URL(url, location.href);
  const entries = [...u.searchParams].sort(([a, x], [b, y]) => (a < b ? -1 : a > b ? 1 : x < y ? -1 : x > y ? 1 : 0));
  return `${u.pathname}?${new URLSearchParams(entries)}`;
}

/** The response of the call index.html started before the modules loaded, once, if it is this URL's. */
function takeFirst(url) {
  const first = window.__siriusFirst;
  if (!first || canonical(first.url) !== canonical(url)) return null;
  window.__siriusFirst = null;
  return first.response;
}

/** Forget the early call (after the first screen: a later one must not get a stale answer). */
export function dropFirst() {
  window.__siriusFirst = null;
}

/**
 * Call an endpoint: get("traces", {service: "x"}) → {data, queries, range}.
 * options: {signal, method, body}.
 */
export async function get(path, params = {}, options = {}) {
  return call(apiUrl(path, params), options);
}

/** POST a JSON body (the SQL screen). */
export async function post(path, body, options = {}) {
  return call(BASE + path, { ...options, method: "POST", body: JSON.stringify(body) });
}

async function call(url, options, retried = false) {
  const headers = { Accept: "application/json", ...authHeaders() };
  if (options.body) headers["Content-Type"] = "application/json";
  let response;
  try {
    const early = !retried && !options.method ? takeFirst(url) : null;
    response = (early && (await early.catch(() => null))) || (await fetch(url, { method: options.method || "GET", body: options.body, headers, signal: options.signal }));
  } catch (err) {
    if (err.name === "AbortError") throw err;
    throw new ApiError(0, `the server did not answer (${err.message})`);
  }
  if (response.status === 401 && !retried) {
    const reason = await errorText(response);
    await askForKey(reason);
    return call(url, options, true);
  }
  if (response.status === 401) {
    // the key given was refused: forget it, so the next call asks again
    try {
      sessionStorage.removeItem(KEY_STORAGE);
    } catch {
      /* storage disabled */
    }
    throw new ApiError(401, `${await errorText(response)} (the key was refused; reload to enter another)`);
  }
  if (!response.ok) {
    const failed = await errorBody(response);
    throw new ApiError(response.status, failed.error, failed.queries, failed.range);
  }
  let body;
  try {
    const text = await response.text();
    // a reviver slows parsing down: only where a cursor or BigInts are wanted
    const reviver = options.bigints ? bigintReviver : text.includes('_before_ns"') ? cursorReviver : undefined;
    body = JSON.parse(text, reviver);
  } catch {
    throw new ApiError(response.status, "the server answered with something other than JSON");
  }
  return { data: body.data, queries: body.queries || [], range: body.range || null };
}

// Integers above 2^53 (ns timestamps) lose digits as JS numbers. Paging cursors are kept as their
// exact decimal text; the SQL screen asks for every such integer as a BigInt. Both need the
// reviver's source text (JSON.parse source access); without it the number is kept.
function cursorReviver(key, value, context) {
  if (key.endsWith("_before_ns") && typeof value === "number" && !Number.isSafeInteger(value) && context && context.source) return context.source;
  return value;
}

function bigintReviver(key, value, context) {
  if (typeof value === "number" && !Number.isSafeInteger(value) && context && context.source && /^-?\d+$/.test(context.source)) return BigInt(context.source);
  return value;
}

async function errorText(response) {
  return (await errorBody(response)).error;
}

/** {error, queries, range} of an error answer (queries and range when the server ran any). */
async function errorBody(response) {
  const text = await response.text().catch(() => "");
  try {
    const parsed = JSON.parse(text);
    if (parsed && parsed.error) return { error: String(parsed.error), queries: parsed.queries || [], range: parsed.range || null };
  } catch {
    /* not JSON */
  }
  return { error: text.trim() || `HTTP ${response.status} ${response.statusText}`, queries: [], range: null };
}

// ---- the key prompt ---------------------------------------------------------------------

let pendingKey = null;

/** Ask for an API key once (concurrent 401s share one prompt); stores it in sessionStorage. */
export function askForKey(reason) {
  if (pendingKey) return pendingKey;
  pendingKey = new Promise((resolve) => {
    const signInOffer = h("div.sign-in-offer");
    const heading = h("h2", null, "API key needed");
    const keyHint = h("p", null, "It is kept in this browser tab's session only.");
    authStatus().then((auth) => {
      if (!auth.login) return;
      heading.textContent = "Sign-in needed";
      keyHint.textContent = "Or enter an API key (kept in this browser tab's session only):";
      signInOffer.append(h("button.primary", { type: "button", "data-testid": "dialog-sign-in", onclick: signIn }, `Sign in with ${auth.issuer}`));
    });
    const input = h("input", { type: "password", name: "key", autocomplete: "off", required: true, "data-testid": "key-input", placeholder: "API key" });
    const dialog = h(
      "dialog.key-dialog",
      { "data-testid": "key-prompt" },
      h(
        "form",
        {
          method: "dialog",
          onsubmit: (event) => {
            event.preventDefault();
            try {
              sessionStorage.setItem(KEY_STORAGE, input.value.trim());
            } catch {
              /* storage disabled: the key lives for this call only */
            }
            dialog.close();
            dialog.remove();
            pendingKey = null;
            resolve();
          },
        },
        heading,
        h("p.muted", { "data-testid": "auth-reason" }, reason || "This Sirius gateway requires an API key."),
        signInOffer,
        keyHint,
        input,
        h("div.actions", null, h("button.primary", { type: "submit", "data-testid": "key-submit" }, "Use key")),
      ),
    );
    document.body.append(dialog);
    dialog.showModal();
    input.focus();
  });
  return pendingKey;
}

/** Download a binary endpoint (Perfetto trace) with the key header, as a file. */
export async function download(url, filename) {
  const response = await fetch(url, { headers: authHeaders() });
  if (response.status === 401) {
    await askForKey(await errorText(response));
    return download(url, filename);
  }
  if (!response.ok) throw new ApiError(response.status, await errorText(response));
  const blob = await response.blob();
  const link = h("a", { href: URL.createObjectURL(blob), download: filename });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(link.href), 10000);
}
