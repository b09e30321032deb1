// The filmvault test page. Every value from the server reaches the page through
// textContent or a form field's value, never parsed as HTML: a film named
// <img src=x onerror=alert(1)> is shown as exactly those characters.
// The access token lives in this script's memory only (not in web storage), so it is gone
// when the tab closes and no other script on the origin could read it from storage.
"use strict";

const state = { token: null, refreshToken: null, username: null, expiresAt: null };

const $ = (selector) => document.querySelector(selector);

function element(tag, text, attributes = {}) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
  return node;
}

function showMessage(text, kind = "info") {
  const box = $("#messages");
  box.replaceChildren(element("p", text, { class: kind }));
}

function describeProblem(status, body) {
  if (body && typeof body === "object" && body.title) {
    const fields = (body.errors || []).map((e) => `${e.field}: ${e.message}`).join("; ");
    return `${status} ${body.title}: ${body.detail}${fields ? ` (${fields})` : ""}` +
      (body.request_id ? ` [request ${body.request_id}]` : "");
  }
  return `HTTP ${status}`;
}

async function api(method, path, body, { auth = true } = {}) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (auth && state.token) headers.Authorization = `Bearer ${state.token}`;
  const response = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    credentials: "omit",
  });
  const text = method === "HEAD" ? "" : await response.text();
  let json = null;
  try { json = text ? JSON.parse(text) : null; } catch { json = null; }
  return { response, text, json };
}

async function call(method, path, body, options) {
  const result = await api(method, path, body, options);
  if (!result.response.ok) {
    showMessage(describeProblem(result.response.status, result.json), "error");
    throw new Error(`HTTP ${result.response.status}`);
  }
  return result.json;
}

function tokenExpiry(token) {
  try {
    const payload = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    return new Date(JSON.parse(atob(payload)).exp * 1000);
  } catch {
    return null;
  }
}

function renderSession() {
  const box = $("#session");
  if (!state.token) {
    box.textContent = "Not signed in.";
    $("#logout-button").disabled = true;
    return;
  }
  const seconds = Math.max(0, Math.round((state.expiresAt - Date.now()) / 1000));
  box.textContent = `Signed in as ${state.username}; access token expires at ` +
    `${state.expiresAt.toLocaleTimeString()} (in ${seconds} s).`;
  $("#logout-button").disabled = false;
}

function filmRow(film) {
  const row = element("tr", null, { "data-film-id": film.id });
  for (const value of [film.id, film.name, film.studio, film.year ?? "", film.owner ?? "—",
    film.likes, film.dislikes]) {
    row.append(element("td", value));
  }
  const actions = element("td");
  const button = (label, name, handler) => {
    const b = element("button", label, { type: "button", "data-action": name });
    b.addEventListener("click", () => handler(film).catch(() => {}));
    actions.append(b);
  };
  button("like", "like", (f) => vote(f, "like"));
  button("dislike", "dislike", (f) => vote(f, "dislike"));
  button("edit", "edit", async (f) => startEditing(f));
  button("delete", "delete", deleteFilm);
  row.append(actions);
  return row;
}

async function loadFilms() {
  const q = new FormData($("#search-form")).get("q").trim();
  const query = new URLSearchParams({ limit: "100" });
  if (q) query.set("q", q);
  const page = await call("GET", `/api/v1/films?${query}`, undefined, { auth: false });
  $("#films-table").replaceChildren(...page.items.map(filmRow));
  $("#page-info").textContent = `${page.items.length} of ${page.total} films.`;
}

async function vote(film, kind) {
  // The seed's route: GET /?like=ID records the vote and answers with a random film.
  await call("GET", `/?${kind}=${encodeURIComponent(film.id)}`);
  await loadFilms();
  // After the reload, so the message never announces counts the table does not show yet.
  showMessage(`${kind === "like" ? "Liked" : "Disliked"} “${film.name}”.`);
}

async function deleteFilm(film) {
  await call("DELETE", `/api/v1/films/${encodeURIComponent(film.id)}`);
  showMessage(`Deleted “${film.name}”.`);
  await loadFilms();
}

function startEditing(film) {
  const form = $("#film-form");
  form.elements.id.value = film.id;
  form.elements.name.value = film.name;
  form.elements.studio.value = film.studio;
  form.elements.year.value = film.year ?? "";
  $("#film-form-title").textContent = `Edit film ${film.id}`;
  $("#film-submit").textContent = "Save";
  $("#film-cancel").hidden = false;
}

function stopEditing() {
  const form = $("#film-form");
  form.reset();
  form.elements.id.value = "";
  $("#film-form-title").textContent = "Add a film";
  $("#film-submit").textContent = "Add";
  $("#film-cancel").hidden = true;
}

async function submitFilm(event) {
  event.preventDefault();
  const form = event.target;
  const id = form.elements.id.value;
  const year = form.elements.year.value;
  const body = { name: form.elements.name.value, studio: form.elements.studio.value };
  if (id) {
    body.year = year ? Number(year) : null;
    await call("PATCH", `/api/v1/films/${encodeURIComponent(id)}`, body);
    showMessage("Saved.");
  } else {
    if (year) body.year = Number(year);
    const film = await call("POST", "/api/v1/films", body);
    showMessage(`Added “${film.name}” (id ${film.id}).`);
  }
  stopEditing();
  await loadFilms();
}

async function register(event) {
  event.preventDefault();
  const data = Object.fromEntries(new FormData(event.target));
  // 202, the same answer whether or not the email already had an account: the mail says.
  await call("POST", "/api/v1/auth/register", data, { auth: false });
  showMessage(`Registered ${data.username}, unless the address already has an account: ` +
    "check your mailbox, then log in.");
  event.target.reset();
}

async function forgotPassword(event) {
  event.preventDefault();
  const data = Object.fromEntries(new FormData(event.target));
  await call("POST", "/api/v1/auth/password-reset", data, { auth: false });
  showMessage("If an account has this address, a reset link is on its way.");
  event.target.reset();
}

// The mailed links carry their token in the fragment (`#/verify-email?token=…`), which the
// browser never sends to a server; it is read here once and wiped from the address bar.
function takeLinkToken() {
  const match = /^#\/(verify-email|reset-password)\?token=([A-Za-z0-9_-]+)$/.exec(location.hash);
  if (match) history.replaceState(null, "", location.pathname);
  return match ? { page: match[1], token: match[2] } : null;
}

async function followMailedLink(link) {
  if (link.page === "verify-email") {
    await call("POST", "/api/v1/auth/verify-email", { token: link.token }, { auth: false });
    showMessage("Your email address is verified; you can log in.");
    return;
  }
  const form = $("#reset-form");
  form.hidden = false;
  form.addEventListener("submit", guard(async (event) => {
    event.preventDefault();
    const { new_password } = Object.fromEntries(new FormData(form));
    await call("POST", "/api/v1/auth/password-reset/confirm",
      { token: link.token, new_password }, { auth: false });
    form.hidden = true;
    showMessage("Password changed; every session was signed out. Log in with the new one.");
  }));
}

async function login(event) {
  event.preventDefault();
  const data = Object.fromEntries(new FormData(event.target));
  const tokens = await call("POST", "/api/v1/auth/login", data, { auth: false });
  state.token = tokens.access_token;
  state.refreshToken = tokens.refresh_token;
  state.username = data.username;
  state.expiresAt = tokenExpiry(tokens.access_token) ?? new Date(Date.now() + tokens.expires_in * 1000);
  event.target.reset();
  renderSession();
  showMessage(`Logged in as ${data.username}.`);
}

async function logout() {
  await call("POST", "/api/v1/auth/logout");
  Object.assign(state, { token: null, refreshToken: null, username: null, expiresAt: null });
  renderSession();
  showMessage("Logged out.");
}

function showRaw(response, text) {
  $("#raw-status").textContent = `${response.status} ${response.statusText}`;
  const items = [];
  for (const [name, value] of response.headers) {
    const item = element("li", null, name.startsWith("x-ratelimit") || name === "retry-after"
      ? { class: "highlight" } : {});
    item.append(element("code", name), document.createTextNode(`: ${value}`));
    items.push(item);
  }
  $("#raw-headers").replaceChildren(...items);
  let pretty = text;
  try { pretty = JSON.stringify(JSON.parse(text), null, 2); } catch { /* not JSON: as is */ }
  $("#raw-body").textContent = pretty;
}

async function sendRaw(event) {
  event.preventDefault();
  const form = event.target;
  const method = form.elements.method.value;
  const path = form.elements.path.value;
  if (!path.startsWith("/")) {
    showMessage("The path must start with / (requests stay on this origin).", "error");
    return;
  }
  let body;
  const raw = form.elements.body.value.trim();
  if (raw && !["GET", "HEAD"].includes(method)) {
    try { body = JSON.parse(raw); } catch {
      showMessage("The body is not valid JSON.", "error");
      return;
    }
  }
  const { response, text } = await api(method, path, body, { auth: form.elements.auth.checked });
  showRaw(response, text);
}

async function headAddFilm() {
  const { response, text } = await api("HEAD", "/add_film");
  showRaw(response, text);
  showMessage(`HEAD /add_film answered ${response.status}.`);
}

async function randomFilm() {
  const film = await call("GET", "/", undefined, { auth: false });
  showMessage(`Random film: “${film.name}” (${film.studio}).`);
}

function guard(handler) {
  return (event) => handler(event).catch((error) => {
    if (!$("#messages").textContent) showMessage(String(error), "error");
  });
}

document.addEventListener("DOMContentLoaded", () => {
  $("#register-form").addEventListener("submit", guard(register));
  $("#login-form").addEventListener("submit", guard(login));
  $("#forgot-form").addEventListener("submit", guard(forgotPassword));
  $("#logout-button").addEventListener("click", guard(logout));
  $("#search-form").addEventListener("submit", guard(async (event) => {
    event.preventDefault();
    await loadFilms();
  }));
  $("#random-button").addEventListener("click", guard(randomFilm));
  $("#film-form").addEventListener("submit", guard(submitFilm));
  $("#film-cancel").addEventListener("click", stopEditing);
  $("#head-button").addEventListener("click", guard(headAddFilm));
  $("#raw-form").addEventListener("submit", guard(sendRaw));
  setInterval(renderSession, 1000);
  const link = takeLinkToken();
  if (link) guard(followMailedLink)(link);
  loadFilms().catch(() => {});
});
