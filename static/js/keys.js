// API keys (created, shown once, listed, revoked) and sessions (listed, ended).

import { call, forget } from "./api.js";
import { $, button, confirmAction, el, formatTime, onSubmit, say, secretBox } from "./ui.js";

async function loadKeys() {
  const { items } = await call("GET", "/users/me/api-keys");
  $("#keys-table").replaceChildren(...items.map((key) => el("tr", { "data-key-id": key.id },
    el("td", {}, key.name), el("td", {}, el("code", {}, key.prefix)), el("td", {}, key.scopes.join(", ")),
    el("td", {}, formatTime(key.created_at)), el("td", {}, formatTime(key.last_used_at)),
    el("td", {}, button("Revoke", async () => {
      if (!(await confirmAction(`Revoke the key “${key.name}”? Scripts using it stop working.`,
        "Revoke the key"))) return;
      await call("DELETE", `/users/me/api-keys/${key.id}`);
      await loadKeys();
      say($("#api-keys"), `Revoked “${key.name}”.`);
    }, { class: "danger", "aria-label": `Revoke “${key.name}”` })))));
  $("#keys-empty").hidden = items.length > 0;
}

async function loadSessions() {
  const { items } = await call("GET", "/users/me/sessions");
  $("#sessions-table").replaceChildren(...items.map((s) => el("tr", { "data-session-id": s.id },
    el("td", {}, formatTime(s.created_at)), el("td", {}, formatTime(s.last_used_at)),
    el("td", {}, s.ip ?? "—"), el("td", { class: "wrap" }, s.user_agent ?? "—"),
    el("td", {}, s.current ? el("strong", {}, "This browser") : button("End", async () => {
      await call("DELETE", `/users/me/sessions/${encodeURIComponent(s.id)}`);
      await loadSessions();
      say($("#sessions"), "That session is ended.");
    }, { "aria-label": `End the session started ${formatTime(s.created_at)}` })))));
}

export function wireKeysAndSessions() {
  onSubmit($("#key-form"), async (data, form) => {
    const scopes = [...form.querySelectorAll("[name=scope]:checked")].map((box) => box.value);
    const key = await call("POST", "/users/me/api-keys", { body: { name: data.name, scopes } });
    form.reset();
    await loadKeys();
    say(form, `Key “${key.name}” created.`,
      secretBox("Copy it now: it is shown only this once. Send it as the X-API-Key header.", key.key));
  });
  $("#end-other-sessions").replaceWith(button("End all other sessions", async () => {
    await call("DELETE", "/users/me/sessions");
    await loadSessions();
    say($("#sessions"), "Every other session is ended.");
  }, { id: "end-other-sessions" }));
  document.addEventListener("user-changed", (event) => {
    if (!event.detail) return;
    loadKeys().catch(() => {});
    loadSessions().catch((error) => {
      if (error?.status === 401) forget("Your session ended. Please sign in again.");
    });
  });
}
