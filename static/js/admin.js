// Administration: users (role, disable, sessions), the audit trail with filters, dead mails.

import { call } from "./api.js";
import { $, act, button, confirmAction, el, formatTime, onSubmit, say } from "./ui.js";

const PAGE_SIZE = 20;
const pages = { users: 0, audit: 0 };
let auditFilters = {};

function roleSelect(user) {
  const select = el("select", { "aria-label": `Role of ${user.username}` },
    ...["user", "admin"].map((role) => el("option", { value: role, selected: role === user.role }, role)));
  select.addEventListener("change", () => act(select, async () => {
    try {
      await call("PATCH", `/admin/users/${user.id}`, { body: { role: select.value } });
      say($("#admin"), `${user.username} is now ${select.value === "admin" ? "an admin" : "a user"}.`);
    } finally {
      await loadUsers();
    }
  }));
  return select;
}

async function showUserSessions(user) {
  const { items } = await call("GET", `/admin/users/${user.id}/sessions`);
  const box = $("#admin-user-sessions");
  box.hidden = false;
  box.replaceChildren(
    el("h4", {}, `Sessions of ${user.username}`),
    items.length === 0 ? el("p", {}, "No live session.") : el("ul", {}, ...items.map((s) =>
      el("li", {}, `Started ${formatTime(s.created_at)}, last used ${formatTime(s.last_used_at)}, ` +
        `from ${s.ip ?? "—"} (${s.user_agent ?? "unknown browser"})`))),
    items.length === 0 ? null : button("End all their sessions", async () => {
      if (!(await confirmAction(`End every session of ${user.username}?`, "End them"))) return;
      await call("DELETE", `/admin/users/${user.id}/sessions`);
      await showUserSessions(user);
      say($("#admin"), `Every session of ${user.username} is ended.`);
    }, { class: "danger" }),
  );
}

async function loadUsers() {
  const page = await call("GET", `/admin/users?limit=${PAGE_SIZE}&offset=${pages.users}`);
  $("#users-table").replaceChildren(...page.items.map((user) => el("tr", { "data-user-id": user.id },
    el("td", {}, user.username), el("td", { class: "wrap" }, user.email), el("td", {}, roleSelect(user)),
    el("td", {}, user.disabled ? "disabled" : "active"),
    el("td", { class: "actions" },
      button(user.disabled ? "Enable" : "Disable", async () => {
        await call("PATCH", `/admin/users/${user.id}`, { body: { disabled: !user.disabled } });
        await loadUsers();
        say($("#admin"), `${user.username} is ${user.disabled ? "enabled" : "disabled"}.`);
      }, { "aria-label": `${user.disabled ? "Enable" : "Disable"} ${user.username}` }),
      button("Sessions", () => showUserSessions(user), { "aria-label": `Sessions of ${user.username}` })))));
  $("#users-info").textContent = `Users ${page.total ? page.offset + 1 : 0}–${page.offset + page.items.length} of ${page.total}`;
  $("#users-previous").disabled = page.offset === 0;
  $("#users-next").disabled = page.offset + page.items.length >= page.total;
}

async function loadAudit() {
  const query = new URLSearchParams({ limit: String(PAGE_SIZE), offset: String(pages.audit) });
  for (const [name, value] of Object.entries(auditFilters)) {
    if (!value) continue;
    query.set(name, name === "since" || name === "until" ? new Date(value).toISOString() : value);
  }
  const page = await call("GET", `/admin/audit-events?${query}`);
  $("#audit-table").replaceChildren(...page.items.map((event) => el("tr", {},
    el("td", {}, formatTime(event.occurred_at)), el("td", {}, event.action), el("td", {}, event.outcome),
    el("td", {}, event.actor_id ?? "—"), el("td", { class: "wrap" }, event.target ?? "—"),
    el("td", {}, event.client_ip ?? "—"), el("td", { class: "wrap" }, event.reason ?? ""))));
  $("#audit-info").textContent = `Events ${page.total ? page.offset + 1 : 0}–${page.offset + page.items.length} of ${page.total}`;
  $("#audit-previous").disabled = page.offset === 0;
  $("#audit-next").disabled = page.offset + page.items.length >= page.total;
}

async function loadMails(state) {
  const page = await call("GET", `/admin/mails?state=${encodeURIComponent(state)}&limit=50`);
  $("#mails-table").replaceChildren(...page.items.map((mail) => el("tr", {},
    el("td", {}, mail.id), el("td", {}, mail.kind), el("td", {}, mail.state), el("td", {}, mail.attempts),
    el("td", {}, formatTime(mail.created_at)), el("td", { class: "wrap" }, mail.last_error ?? ""))));
  $("#mails-info").textContent = `${page.total} ${state} mail${page.total === 1 ? "" : "s"}.`;
}

function pager(id, key, load, step) {
  $(id).replaceWith(button(step < 0 ? "Previous" : "Next", async () => {
    pages[key] = Math.max(0, pages[key] + step * PAGE_SIZE);
    await load();
  }, { id: id.slice(1) }));
}

export function wireAdmin() {
  pager("#users-previous", "users", loadUsers, -1);
  pager("#users-next", "users", loadUsers, 1);
  pager("#audit-previous", "audit", loadAudit, -1);
  pager("#audit-next", "audit", loadAudit, 1);
  onSubmit($("#audit-form"), async (data) => {
    auditFilters = data;
    pages.audit = 0;
    await loadAudit();
  });
  onSubmit($("#mails-form"), async ({ state }) => loadMails(state));
  document.addEventListener("user-changed", (event) => {
    if (event.detail?.role !== "admin") return;
    pages.users = 0;
    pages.audit = 0;
    loadUsers().catch(() => {});
    loadAudit().catch(() => {});
    loadMails("dead").catch(() => {});
  });
}
