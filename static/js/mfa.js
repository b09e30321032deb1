// Two-factor sign-in (TOTP): enrol with a QR code, recovery codes shown once, disable.

import { call } from "./api.js";
import { $, el, onSubmit, say, secretBox } from "./ui.js";

/** `enabled`: true, false, or undefined when the profile does not say. */
function showEnabled(enabled) {
  $("#mfa-status").textContent = enabled === undefined
    ? "Set up an authenticator app for a second sign-in step, or turn it off if it is on."
    : enabled ? "Two-factor sign-in is on." : "Two-factor sign-in is off.";
  $("#mfa-start-form").hidden = enabled === true;
  $("#mfa-disable-form").hidden = enabled === false;
  $("#mfa-confirm-form").hidden = true;
  $("#mfa-enrolment").replaceChildren();
}

function showEnrolment({ secret, otpauth_uri, qr_code }) {
  // Only a data: image from our own server becomes an image; anything else is not shown.
  const qr = typeof qr_code === "string" && qr_code.startsWith("data:image/")
    ? el("img", { src: qr_code, alt: "QR code to scan with an authenticator app", width: 200, height: 200 })
    : null;
  $("#mfa-enrolment").replaceChildren(
    el("p", {}, "Scan this code with an authenticator app, or type the secret into it."),
    qr,
    secretBox("Secret (for typing into the app):", secret),
    el("details", {}, el("summary", {}, "otpauth link"), el("code", { class: "wrap" }, otpauth_uri)),
  );
  $("#mfa-start-form").hidden = true;
  $("#mfa-confirm-form").hidden = false;
  $("#mfa-confirm-form [name=code]").focus();
}

export function wireMfa() {
  onSubmit($("#mfa-start-form"), async () => {
    showEnrolment(await call("POST", "/users/me/mfa/totp"));
  });
  onSubmit($("#mfa-confirm-form"), async ({ code }, form) => {
    const { recovery_codes } = await call("POST", "/users/me/mfa/totp/confirm", { body: { code: code.trim() } });
    showEnabled(true);
    form.reset();
    say($("#mfa"), "Done: from now on, signing in asks for a code from the app.",
      secretBox("Your recovery codes, each good for one sign-in. Keep them safe: they are shown only this once.",
        recovery_codes.join("\n")));
  });
  onSubmit($("#mfa-disable-form"), async (data, form) => {
    await call("DELETE", "/users/me/mfa/totp", { body: { password: data.password, code: data.code.trim() } });
    form.reset();
    showEnabled(false);
    say($("#mfa"), "Two-factor sign-in is off.");
  });
  document.addEventListener("user-changed", (event) => {
    if (event.detail) showEnabled(event.detail.mfa_enabled);
  });
}
