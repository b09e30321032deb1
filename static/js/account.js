// Signing in and out, registration, the mailed links, and the account's own settings.

import { call, forget, logIn, logInSecondStep, logOut, signedIn } from "./api.js";
import { $, act, confirmAction, onSubmit, say } from "./ui.js";

let pendingMfaToken = null;
let resetToken = null;

/** Sets `#who` and tells every section who is signed in (`null`: nobody). */
export async function loadCurrentUser(withSecondFactor = false) {
  const me = await call("GET", "/users/me");
  // A sign-in that took a second factor proves it is on, whatever the profile says.
  if (withSecondFactor) me.mfa_enabled = true;
  document.dispatchEvent(new CustomEvent("user-changed", { detail: me }));
  return me;
}

function signedOutView() {
  document.dispatchEvent(new CustomEvent("user-changed", { detail: null }));
}

function showStep(step) {
  $("#login-form").hidden = step !== "password";
  $("#mfa-login-form").hidden = step !== "code";
  const focus = step === "code" ? $("#mfa-login-form [name=code]") : null;
  focus?.focus();
}

async function finishSignIn(origin, withSecondFactor = false) {
  const me = await loadCurrentUser(withSecondFactor);
  showStep("password");
  $("#films").scrollIntoView({ block: "start" });
  say($("#films"), `Signed in as ${me.username}.`);
  origin.reset();
}

function wireSignIn() {
  onSubmit($("#login-form"), async ({ username, password }, form) => {
    const { mfaToken } = await logIn(username, password);
    if (mfaToken) {
      pendingMfaToken = mfaToken;
      form.reset();
      showStep("code");
      say(form, "Enter the 6-digit code from your authenticator app, or a recovery code.");
      return;
    }
    await finishSignIn(form);
  });
  onSubmit($("#mfa-login-form"), async ({ code }, form) => {
    await logInSecondStep(pendingMfaToken, code.trim());
    pendingMfaToken = null;
    await finishSignIn(form, true);
  });
  $("#mfa-cancel").addEventListener("click", () => {
    pendingMfaToken = null;
    showStep("password");
  });
  onSubmit($("#register-form"), async (data, form) => {
    // 202 with the same answer whether or not the address already has an account.
    await call("POST", "/auth/register", { body: data, auth: false });
    form.reset();
    say(form, `Account ${data.username} requested. If the server asks for verification, ` +
      "open the link in the mail we sent, then sign in.");
  });
  onSubmit($("#reset-form"), async ({ new_password }, form) => {
    await call("POST", "/auth/password-reset/confirm",
      { body: { token: resetToken, new_password }, auth: false });
    resetToken = null;
    form.reset();
    form.hidden = true;
    say($("#sign-in"), "Password changed, and every session signed out. Sign in with the new password.");
  });
  onSubmit($("#forgot-form"), async (data, form) => {
    await call("POST", "/auth/password-reset", { body: data, auth: false });
    form.reset();
    say(form, "If an account has this address, a reset link is on its way.");
  });
  onSubmit($("#resend-form"), async (data, form) => {
    await call("POST", "/auth/verify-email/resend", { body: data, auth: false });
    form.reset();
    say(form, "If an unverified account has this address, a new link is on its way.");
  });
  $("#logout-button").addEventListener("click", (event) =>
    act(event.currentTarget, async () => {
      await logOut();
      say(null, "Signed out.");
    }));
}

/**
 * The mailed links carry their token in the fragment (`#/verify-email?token=…`), which the
 * browser never sends to a server; it is read once and wiped from the address bar and history.
 */
function takeLinkFromAddress() {
  const match = /^#\/(verify-email|reset-password|confirm-email)\?token=([A-Za-z0-9_-]{1,200})$/
    .exec(location.hash);
  if (!match) return null;
  history.replaceState(null, "", location.pathname);
  return { page: match[1], token: match[2] };
}

export function followMailedLink() {
  const link = takeLinkFromAddress();
  if (!link) return;
  // Shown above every section: the link may be opened while signed in.
  const origin = $("#global-notice");
  if (link.page === "reset-password") {
    resetToken = link.token;
    $("#reset-form").hidden = false;
    $("#reset-form").elements.new_password.focus();
    return;
  }
  const path = link.page === "verify-email" ? "/auth/verify-email" : "/auth/confirm-email";
  const done = link.page === "verify-email"
    ? "Your email address is verified. You can sign in."
    : "Your new email address is confirmed.";
  act(origin, async () => {
    await call("POST", path, { body: { token: link.token }, auth: false });
    say(origin, done);
    if (signedIn() && link.page === "confirm-email") await loadCurrentUser();
  });
}

function wireSettings() {
  onSubmit($("#password-form"), async (data, form) => {
    await call("PUT", "/users/me/password", { body: data });
    form.reset();
    // Every session of the account ends with a password change, this one included.
    forget(null);
    say(null, "Password changed and every session signed out. Sign in with the new password.");
  });
  onSubmit($("#email-form"), async (data, form) => {
    await call("PUT", "/users/me/email", { body: data });
    form.reset();
    say(form, "Check the new address's mailbox: the change is made when you open the link " +
      "we sent there. The current address was told of the request.");
  });
  onSubmit($("#delete-account-form"), async (data, form) => {
    if (!(await confirmAction("Delete your account, your films and your votes? This cannot be undone.",
      "Delete my account"))) return;
    await call("DELETE", "/users/me", { body: data });
    form.reset();
    forget(null);
    say(null, "Your account is deleted.");
  });
}

function showProfile(me) {
  if (!me) return;
  $("#profile-username").textContent = me.username;
  $("#profile-email").textContent = me.email;
  $("#profile-role").textContent = me.role;
}

export function wireAccount() {
  wireSignIn();
  wireSettings();
  document.addEventListener("user-changed", (event) => showProfile(event.detail));
  // Logout, revocation, a failed renewal or a step-up demand all land here.
  return signedOutView;
}
