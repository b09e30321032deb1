// Films: browse with paging and search, a random film, add, edit and delete where the caller
// may, and the caller's own vote, shown and undoable.

import { ApiProblem, call } from "./api.js";
import { $, button, confirmAction, el, onSubmit, say, whileDisabled } from "./ui.js";

const PAGE_SIZE = 20;
const view = { offset: 0, q: "", user: null };
// Film answers carry counts, shared by everyone; the caller's own votes on the films shown
// come from GET /users/me/votes, and follow the caller's clicks.
const myVotes = new Map();

const mayChange = (film) =>
  view.user !== null && (view.user.role === "admin" || film.owner === view.user.username);

function voteButton(film, kind, label) {
  const pressed = myVotes.get(film.id) === kind;
  return button(`${label} ${kind === "like" ? film.likes : film.dislikes}`, async () => {
    const updated = pressed
      ? await call("DELETE", `/films/${film.id}/vote`)
      : await call("PUT", `/films/${film.id}/vote`, { body: { vote: kind } });
    if (pressed) myVotes.delete(film.id);
    else myVotes.set(film.id, kind);
    await loadFilms();
    const verb = pressed ? "Vote withdrawn on" : kind === "like" ? "You like" : "You dislike";
    say($("#films"), `${verb} “${updated.name}”.`);
  }, {
    "aria-pressed": String(pressed),
    "data-action": kind,
    "aria-label": `${label} “${film.name}” (${kind === "like" ? film.likes : film.dislikes})`,
    title: pressed ? "Your vote: press again to withdraw it" : label,
  });
}

function filmRow(film) {
  const actions = el("td", { class: "actions" });
  if (view.user) actions.append(voteButton(film, "like", "Like"), voteButton(film, "dislike", "Dislike"));
  else actions.append(el("span", { class: "muted" }, `${film.likes} likes, ${film.dislikes} dislikes`));
  if (mayChange(film)) {
    actions.append(
      button("Edit", async () => startEditing(film), { "data-action": "edit", "aria-label": `Edit “${film.name}”` }),
      button("Delete", () => deleteFilm(film), { "data-action": "delete", class: "danger", "aria-label": `Delete “${film.name}”` }),
    );
  }
  return el("tr", { "data-film-id": film.id },
    el("td", { class: "title" }, film.name), el("td", { "data-label": "Studio" }, film.studio),
    el("td", { "data-label": "Year" }, film.year ?? "—"),
    el("td", { "data-label": "Added by" }, film.owner ?? "—"), actions);
}

export async function loadFilms() {
  const query = new URLSearchParams({ limit: String(PAGE_SIZE), offset: String(view.offset) });
  if (view.q) query.set("q", view.q);
  const page = await call("GET", `/films?${query}`, { auth: false });
  if (view.user && page.items.length > 0) await loadMyVotes(page.items);
  $("#films-table").replaceChildren(...page.items.map(filmRow));
  const first = page.total === 0 ? 0 : page.offset + 1;
  $("#page-info").textContent = page.total === 0
    ? (view.q ? `No film name contains “${view.q}”.` : "No films yet.")
    : `Films ${first}–${page.offset + page.items.length} of ${page.total}`;
  $("#previous-page").disabled = page.offset === 0;
  $("#next-page").disabled = page.offset + page.items.length >= page.total;
}

async function loadMyVotes(films) {
  const ids = films.map((film) => film.id).join(",");
  const { items } = await call("GET", `/users/me/votes?film_ids=${ids}`);
  for (const film of films) myVotes.delete(film.id);
  for (const { film_id: id, vote } of items) myVotes.set(id, vote);
}

async function deleteFilm(film) {
  if (!(await confirmAction(`Delete “${film.name}” and its votes?`, "Delete the film"))) return;
  await call("DELETE", `/films/${film.id}`);
  myVotes.delete(film.id);
  await loadFilms();
  say($("#films"), `Deleted “${film.name}”.`);
}

/**
 * Opens the film's current version in the form; its tag goes with the save (`If-Match`). The
 * form stays disabled until then, so nothing typed meanwhile is overwritten by the answer.
 */
async function startEditing({ id }) {
  const form = $("#film-form");
  await whileDisabled([...form.elements], async () =>
    fillForEditing(form, await call("GET", `/films/${encodeURIComponent(id)}`, { withTag: true })));
  form.elements.name.focus();
}

function fillForEditing(form, { value: film, etag }) {
  form.dataset.etag = etag ?? "";
  form.elements.id.value = film.id;
  form.elements.name.value = film.name;
  form.elements.studio.value = film.studio;
  form.elements.year.value = film.year ?? "";
  $("#film-form-title").textContent = `Edit “${film.name}”`;
  $("#film-submit").textContent = "Save changes";
  $("#film-cancel").hidden = false;
}

function stopEditing() {
  const form = $("#film-form");
  form.reset();
  form.elements.id.value = "";
  delete form.dataset.etag;
  $("#film-form-title").textContent = "Add a film";
  $("#film-submit").textContent = "Add the film";
  $("#film-cancel").hidden = true;
}

async function saveFilm({ id, name, studio, year }) {
  const body = { name, studio, year: year ? Number(year) : null };
  if (id) {
    const ifMatch = $("#film-form").dataset.etag || undefined;
    try {
      await call("PATCH", `/films/${encodeURIComponent(id)}`, { body, ifMatch });
    } catch (error) {
      if (!(error instanceof ApiProblem) || error.status !== 412) throw error;
      await startEditing({ id });
      say($("#film-form"), "Someone changed this film since you opened it. The form now shows " +
        "their version: make your change again.");
      return;
    }
    say($("#film-form"), `Saved “${name}”.`);
  } else {
    const film = await call("POST", "/films", { body });
    say($("#film-form"), `Added “${film.name}”.`);
  }
  stopEditing();
  await loadFilms();
}

function showRandom(film) {
  say($("#films"), "A random film: ",
    el("strong", {}, film.name), ` (${film.studio}${film.year ? `, ${film.year}` : ""})`);
}

export function wireFilms() {
  onSubmit($("#search-form"), async ({ q }) => {
    view.q = q.trim();
    view.offset = 0;
    await loadFilms();
  });
  $("#random-button").replaceWith(button("Random film", async () =>
    showRandom(await call("GET", "/films/random", { auth: false })), { id: "random-button" }));
  $("#previous-page").replaceWith(button("Previous", async () => {
    view.offset = Math.max(0, view.offset - PAGE_SIZE);
    await loadFilms();
  }, { id: "previous-page" }));
  $("#next-page").replaceWith(button("Next", async () => {
    view.offset += PAGE_SIZE;
    await loadFilms();
  }, { id: "next-page" }));
  onSubmit($("#film-form"), saveFilm);
  $("#film-cancel").addEventListener("click", stopEditing);
  document.addEventListener("user-changed", (event) => {
    view.user = event.detail;
    if (!view.user) myVotes.clear();
    stopEditing();
    loadFilms().catch(() => {});
  });
}
