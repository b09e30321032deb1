// The API client: the only module that calls fetch. The tokens live in this module's memory
// only (never in web storage or a cookie), so a reload or a closed tab signs
// out, and no other script on the origin can read them from storage.

const API = "/api/v1";
// Renew this long before the access token expires (at most a fifth of its lifetime), so no
// request races the expiry.
const RENEW_MARGIN_MS = 60_000;

/** A problem+json answer (or a bare HTTP failure), with what a person needs to act on it. */
export class ApiProblem extends Error {
  constructor(status, body, headers) {
    const problem = body && typeof body === "object" ? body : {};
    super(problem.title || `HTTP ${status}`);
    this.status = status;
    this.type = typeof problem.type === "string" ? problem.type : "";
    this.title = problem.title || `The server answered ${status}`;
    this.detail = typeof problem.detail === "string" ? problem.detail : "";
    this.fieldErrors = Array.isArray(problem.errors) ? problem.errors : [];
    this.requestId = problem.request_id || headers.get("x-request-id") || "";
    const retry = Number(headers.get("retry-after"));
    this.retryAfter = Number.isFinite(retry) && retry > 0 ? retry : null;
  }

  is(kind) {
    return this.type.endsWith(`/${kind}`);
  }
}

/** The request never got an answer: offline, server down, connection cut. */
export class NetworkFailure extends Error {}

const session = { access: null, refresh: null, expiresAt: 0, renewTimer: null, renewing: null };
const listeners = new Set();

/** Called with no argument when the session ends for any reason (logout, expiry, revocation). */
export function onSessionEnd(listener) {
  listeners.add(listener);
}

export function signedIn() {
  return session.access !== null;
}

export function accessExpiresAt() {
  return session.expiresAt;
}

function adopt(tokens) {
  session.access = tokens.access_token;
  session.refresh = tokens.refresh_token;
  session.expiresAt = Date.now() + tokens.expires_in * 1000;
  clearTimeout(session.renewTimer);
  const lifetime = tokens.expires_in * 1000;
  const wait = lifetime - Math.min(RENEW_MARGIN_MS, lifetime / 5);
  session.renewTimer = setTimeout(() => renew().catch(() => {}), wait);
}

/** Forget the tokens here; `why` is passed to the listeners (null after a chosen logout). */
export function forget(why = null) {
  const had = session.access !== null;
  clearTimeout(session.renewTimer);
  Object.assign(session, { access: null, refresh: null, expiresAt: 0, renewTimer: null });
  if (had) for (const listener of listeners) listener(why);
}

async function send(method, path, body, bearer, { ifMatch, withTag = false } = {}) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (bearer) headers.Authorization = `Bearer ${bearer}`;
  if (ifMatch) headers["If-Match"] = ifMatch;
  let response;
  try {
    response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "omit",
      cache: "no-store",
      redirect: "error",
    });
  } catch {
    throw new NetworkFailure("The server could not be reached: check the connection and try again.");
  }
  const text = await response.text();
  let json = null;
  try {
    json = text ? JSON.parse(text) : null;
  } catch {
    json = null;
  }
  if (!response.ok) throw new ApiProblem(response.status, json, response.headers);
  return withTag ? { value: json, etag: response.headers.get("ETag") } : json;
}

/** One refresh at a time: concurrent 401s share it. A failed refresh ends the session. */
function renew() {
  if (!session.refresh) return Promise.reject(new Error("not signed in"));
  session.renewing ??= send("POST", `${API}/auth/refresh`, { refresh_token: session.refresh })
    .then(adopt)
    .catch((error) => {
      if (error instanceof ApiProblem) forget("Your session ended. Please sign in again.");
      throw error;
    })
    .finally(() => {
      session.renewing = null;
    });
  return session.renewing;
}

/**
 * Calls the API. `auth`: send the access token; on a 401 the token is renewed once and the
 * request repeated. A "reauthentication-required" problem ends the session: the server wants a
 * fresh sign-in before this action. `withTag`: answer `{value, etag}`; `ifMatch`: change only
 * the version with that tag (someone else's change in between is a 412, not overwritten).
 */
export async function call(method, path, { body, auth = true, ifMatch, withTag } = {}) {
  const url = path.startsWith("/api/") || path === "/" ? path : `${API}${path}`;
  const options = { ifMatch, withTag };
  if (!auth || !session.access) return send(method, url, body, null, options);
  if (Date.now() > session.expiresAt - 5_000) await renew().catch(() => {});
  try {
    return await send(method, url, body, session.access, options);
  } catch (error) {
    if (error instanceof ApiProblem && error.is("reauthentication-required")) {
      forget("For this action the server wants a fresh sign-in. Please sign in again, then repeat it.");
      throw error;
    }
    if (!(error instanceof ApiProblem) || error.status !== 401 || !session.refresh) throw error;
    await renew();
    return send(method, url, body, session.access, options);
  }
}

/** Logs in; answers `{mfaToken}` when a second factor is needed, else `{}` once signed in. */
export async function logIn(username, password) {
  const answer = await send("POST", `${API}/auth/login`, { username, password }, null);
  if (answer.mfa_required) return { mfaToken: answer.mfa_token };
  adopt(answer);
  return {};
}

export async function logInSecondStep(mfaToken, code) {
  adopt(await send("POST", `${API}/auth/login/mfa`, { mfa_token: mfaToken, code }, null));
}

export async function logOut() {
  try {
    await call("POST", "/auth/logout");
  } finally {
    forget(null);
  }
}
