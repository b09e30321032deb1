// Wires the sections together: which are visible depends on who is signed in.

import { accessExpiresAt, onSessionEnd, signedIn } from "./api.js";
import { followMailedLink, wireAccount } from "./account.js";
import { wireAdmin } from "./admin.js";
import { wireFilms } from "./films.js";
import { wireKeysAndSessions } from "./keys.js";
import { wireMfa } from "./mfa.js";
import { $, $$, say } from "./ui.js";

function showFor(user) {
  for (const part of $$("[data-when]")) {
    const when = part.dataset.when;
    part.hidden = when === "signed-out" ? user !== null
      : when === "signed-in" ? user === null
        : user?.role !== "admin";
  }
  $("#who").textContent = user ? `Signed in as ${user.username} (${user.role})` : "Not signed in";
}

function showExpiry() {
  const box = $("#expiry");
  if (!signedIn()) {
    box.textContent = "";
    return;
  }
  const minutes = Math.max(0, Math.round((accessExpiresAt() - Date.now()) / 60_000));
  box.textContent = `access renewed automatically (next in about ${minutes} min)`;
}

const signedOutView = wireAccount();
wireFilms();
wireKeysAndSessions();
wireMfa();
wireAdmin();
document.addEventListener("user-changed", (event) => showFor(event.detail));
onSessionEnd((why) => {
  signedOutView();
  if (why) say(null, why);
});
setInterval(showExpiry, 15_000);
document.addEventListener("user-changed", showExpiry);
signedOutView();
followMailedLink();
// A mailed link opened in a tab that already shows the page changes only the fragment.
window.addEventListener("hashchange", followMailedLink);
