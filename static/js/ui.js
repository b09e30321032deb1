// DOM helpers and messages. Every server string reaches the page as text (textContent, a
// form field's value or an attribute set by setAttribute), never parsed as HTML.

import { ApiProblem, NetworkFailure } from "./api.js";

export const $ = (selector, root = document) => root.querySelector(selector);
export const $$ = (selector, root = document) => [...root.querySelectorAll(selector)];

/** `el("td", {class: "n"}, "text", child)`: an element with attributes and text or children. */
export function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === false || value === null || value === undefined) continue;
    node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export function button(label, onClick, attributes = {}) {
  const node = el("button", { type: "button", ...attributes }, label);
  node.addEventListener("click", () => act(node, onClick));
  return node;
}

export function formatTime(value) {
  if (!value) return "—";
  const date = new Date(value);
  return Number.isNaN(date.getTime()) ? String(value) : date.toLocaleString();
}

/** Removes every message and field error on the page: no stale message survives an action. */
export function clearMessages() {
  for (const box of $$(".notice")) {
    box.replaceChildren();
    box.className = "notice";
  }
  for (const error of $$(".field-error")) error.remove();
  for (const input of $$("[aria-invalid]")) {
    input.removeAttribute("aria-invalid");
    input.removeAttribute("aria-describedby");
  }
}

function noticeFor(origin) {
  return origin?.closest("section")?.querySelector(".notice") ?? $("#global-notice");
}

/** Shows a success message in the notice of the section `origin` belongs to. */
export function say(origin, text, ...extra) {
  const box = noticeFor(origin);
  box.className = "notice ok";
  box.replaceChildren(el("p", {}, text), ...extra);
}

function fieldError(form, fieldName, message) {
  const input = form?.elements?.namedItem(fieldName);
  if (!(input instanceof HTMLElement) || input.type === "hidden") return false;
  const id = `${form.id}-${fieldName}-error`;
  input.setAttribute("aria-invalid", "true");
  input.setAttribute("aria-describedby", id);
  input.closest("label, .field")?.append(el("span", { class: "field-error", id }, message));
  return true;
}

/** Shows a failure: title, detail, each field's error beside its field, request id, wait. */
export function showFailure(origin, error) {
  const box = noticeFor(origin);
  box.className = "notice error";
  if (error instanceof NetworkFailure) {
    box.replaceChildren(el("p", { class: "title" }, "Network failure"), el("p", {}, error.message));
    return;
  }
  if (!(error instanceof ApiProblem)) {
    box.replaceChildren(el("p", { class: "title" }, "Something went wrong in this page"),
      el("p", {}, String(error.message || error)));
    console.warn(error);
    return;
  }
  const form = origin?.closest("form");
  const unplaced = error.fieldErrors.filter((e) => !fieldError(form, e.field, e.message));
  box.replaceChildren(
    el("p", { class: "title" }, error.title),
    error.detail ? el("p", {}, error.detail) : null,
    unplaced.length ? el("ul", {}, ...unplaced.map((e) => el("li", {}, `${e.field}: ${e.message}`))) : null,
    error.retryAfter ? el("p", {}, `Too many requests: try again in ${error.retryAfter} s.`) : null,
    error.requestId ? el("p", { class: "request-id" }, "Request id for support: ", el("code", {}, error.requestId)) : null,
  );
}

/**
 * Runs an action started by `origin` (a form or a button): clears old messages, disables the
 * control while it runs, and shows any failure where it happened.
 */
export async function act(origin, action) {
  clearMessages();
  const controls = origin instanceof HTMLFormElement ? $$("button", origin) : [origin];
  origin.setAttribute("aria-busy", "true");
  try {
    await whileDisabled(controls, action);
  } catch (error) {
    showFailure(origin.isConnected ? origin : null, error);
  } finally {
    origin.removeAttribute("aria-busy");
  }
}

/** Runs `action` with `controls` disabled, and enables them again however it ends. */
export async function whileDisabled(controls, action) {
  for (const control of controls) control.disabled = true;
  try {
    return await action();
  } finally {
    for (const control of controls) control.disabled = false;
  }
}

/** `onSubmit(form, async (data) => …)`: the form's fields as an object, the page not reloaded. */
export function onSubmit(form, handler) {
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    act(form, () => handler(Object.fromEntries(new FormData(form)), form));
  });
}

/** A secret shown once: the value, a copy button, and a warning that it is not shown again. */
export function secretBox(label, value) {
  const code = el("code", { class: "secret" }, value);
  const copy = el("button", { type: "button" }, "Copy");
  copy.addEventListener("click", async () => {
    try {
      await navigator.clipboard.writeText(value);
      copy.textContent = "Copied";
    } catch {
      const range = document.createRange();
      range.selectNodeContents(code);
      getSelection().removeAllRanges();
      getSelection().addRange(range);
      copy.textContent = "Selected: press Ctrl+C";
    }
  });
  return el("div", { class: "secret-box" }, el("p", {}, label), code, copy);
}

/** Asks before a destructive action, in a native modal dialog (focus trapped, Esc cancels). */
export function confirmAction(question, confirmLabel) {
  const dialog = $("#confirm-dialog");
  $("#confirm-question", dialog).textContent = question;
  $("#confirm-yes", dialog).textContent = confirmLabel;
  dialog.returnValue = "";
  dialog.showModal();
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "yes"), { once: true });
  });
}
