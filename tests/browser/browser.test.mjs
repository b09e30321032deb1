// Real-browser test of the page at /static/index.html, over HTTPS with a freshly generated dev
// certificate, in Debian's headless Chromium driven by playwright-core.
//
//   node tests/browser/browser.test.mjs     (after cargo build; FILMVAULT_BIN=path overrides)
//
// Drives every flow of the page against the real server in development mode, reading the mails
// from the server's MAIL_OUTBOX_DIR: registration with verification, sign-in, films (paging,
// search, random, add, edit, delete, votes), API keys, sessions, email and password changes,
// the password reset, two-factor sign-in, token renewal, and the admin section. It fails on
// any console error the step did not expect, any request to another origin, any serious or
// critical axe-core violation, and saves desktop and phone screenshots of each section to
// tests/browser/artifacts/. Without Chromium it fails loudly: it never passes by skipping.
import { spawn, spawnSync } from "node:child_process";
import { createHash, createHmac, X509Certificate } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { AxeBuilder } from "@axe-core/playwright";
import { chromium } from "playwright-core";

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, "../..");
const binary = resolve(
  root,
  process.env.FILMVAULT_BIN ?? join(process.env.CARGO_TARGET_DIR ?? "target", "debug", "filmvault"),
);
const chromiumPath = process.env.CHROMIUM ?? "/usr/bin/chromium";
const artifacts = join(here, "artifacts");
const DESKTOP = { width: 1280, height: 900 };
const PHONE = { width: 390, height: 844 };
const STEP_TIMEOUT_MS = 10_000;
const TOTAL_TIMEOUT_MS = 360_000;

let server;

function fail(message) {
  server?.kill();
  console.error(`\n${"!".repeat(72)}\nBROWSER TEST FAILED: ${message}\n${"!".repeat(72)}\n`);
  process.exit(1);
}

setTimeout(() => fail(`not finished after ${TOTAL_TIMEOUT_MS / 1000} s`), TOTAL_TIMEOUT_MS).unref();

if (!existsSync(chromiumPath)) {
  fail(`no Chromium at ${chromiumPath}; install Debian's chromium (apt-get install chromium). ` +
    "The browser test was NOT run.");
}
if (!existsSync(binary)) fail(`no filmvault binary at ${binary}; run cargo build first`);

function freePort() {
  return new Promise((resolvePort, reject) => {
    const probe = createServer();
    probe.listen(0, "127.0.0.1", () => {
      const { port } = probe.address();
      probe.close(() => resolvePort(port));
    });
    probe.on("error", reject);
  });
}

const work = mkdtempSync(join(tmpdir(), "filmvault-browser-"));
const certs = join(work, "certs");
const outbox = join(work, "mail-outbox");
const devCert = spawnSync(binary, ["dev-cert", "--out-dir", certs], { encoding: "utf8" });
if (devCert.status !== 0) fail(`dev-cert failed: ${devCert.stderr}`);

// Chromium trusts exactly this certificate's key, nothing more.
const leaf = new X509Certificate(readFileSync(join(certs, "localhost.crt")));
const spki = createHash("sha256")
  .update(leaf.publicKey.export({ type: "spki", format: "der" }))
  .digest("base64");

const [httpPort, httpsPort] = [await freePort(), await freePort()];
const base = `https://localhost:${httpsPort}`;
const environment = {
  PATH: process.env.PATH,
  APP_PORT: String(httpPort),
  HTTPS_PORT: String(httpsPort),
  TLS_CERT_PATH: join(certs, "localhost.crt"),
  TLS_KEY_PATH: join(certs, "localhost.key"),
  DATABASE_URL: `sqlite://${join(work, "filmvault.db")}`,
  SEED_DEMO_DATA: "true",
  REQUIRE_EMAIL_VERIFICATION: "true",
  PUBLIC_BASE_URL: base,
  MAIL_OUTBOX_DIR: outbox,
  MAIL_POLL_INTERVAL_MS: "200",
  RATE_LIMIT_AUTH: "300/min",
  RATE_LIMIT_WRITE: "600/min",
  RATE_LIMIT_LOGIN_PER_USERNAME: "20/hour",
  RUST_LOG: "info",
  LOG_FORMAT: "json",
};
const admin = { username: "browser_admin", password: "admin-lantern-harbour-97" };
const createAdmin = spawnSync(binary,
  ["create-admin", "--username", admin.username, "--email", "keeper@example.com"],
  { cwd: work, env: { ...environment, ADMIN_PASSWORD: admin.password }, encoding: "utf8" });
if (createAdmin.status !== 0) fail(`create-admin failed: ${createAdmin.stderr}`);

server = spawn(binary, [], { cwd: work, env: environment, stdio: ["ignore", "pipe", "pipe"] });
let serverOutput = "";
await new Promise((ready, reject) => {
  const timer = setTimeout(() => reject(new Error("the server did not start")), 30_000);
  server.stdout.on("data", (chunk) => {
    serverOutput += chunk;
    if (serverOutput.includes("filmvault is listening")) {
      clearTimeout(timer);
      ready();
    }
  });
  server.on("exit", (code) => reject(new Error(`the server exited with ${code}`)));
}).catch((error) => fail(error.message));

const problems = [];
const accessibility = [];
const skipped = [];
let browser;

function check(condition, message) {
  if (!condition) throw new Error(message);
}

// --- mail ---------------------------------------------------------------------------------

function decodeQuotedPrintable(text) {
  return text.replace(/=\r?\n/g, "").replace(/=([0-9A-F]{2})/g,
    (_, hex) => String.fromCharCode(parseInt(hex, 16)));
}

/** The newest link to `page` in a mail to `address`, waiting for the outbox worker. */
async function mailedLink(address, page, after = 0) {
  const pattern = new RegExp(`${base.replace(/[.]/g, "\\.")}/static/index\\.html#/${page}\\?token=[A-Za-z0-9_-]+`);
  const deadline = Date.now() + STEP_TIMEOUT_MS;
  while (Date.now() < deadline) {
    const files = existsSync(outbox) ? readdirSync(outbox).filter((f) => f.endsWith(".eml")).sort() : [];
    for (const file of files.slice(after).reverse()) {
      const mail = decodeQuotedPrintable(readFileSync(join(outbox, file), "utf8"));
      if (!mail.includes(`To: ${address}`)) continue;
      const link = pattern.exec(mail);
      if (link) return link[0];
    }
    await new Promise((wait) => setTimeout(wait, 200));
  }
  throw new Error(`no ${page} mail to ${address} in ${outbox}`);
}

const mailCount = () => (existsSync(outbox) ? readdirSync(outbox).filter((f) => f.endsWith(".eml")).length : 0);

// --- TOTP (RFC 6238), to play the authenticator app ---------------------------------------

function base32(secret) {
  const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
  let bits = "";
  for (const char of secret.replace(/=+$/, "").toUpperCase()) {
    bits += alphabet.indexOf(char).toString(2).padStart(5, "0");
  }
  const bytes = [];
  for (let i = 0; i + 8 <= bits.length; i += 8) bytes.push(parseInt(bits.slice(i, i + 8), 2));
  return Buffer.from(bytes);
}

function totp(secret, step = Math.floor(Date.now() / 30_000)) {
  const counter = Buffer.alloc(8);
  counter.writeBigUInt64BE(BigInt(step));
  const mac = createHmac("sha1", base32(secret)).update(counter).digest();
  const offset = mac[mac.length - 1] & 0xf;
  return String((mac.readUInt32BE(offset) & 0x7fffffff) % 1_000_000).padStart(6, "0");
}

/** A code from a time step no code was used from yet (servers refuse a code twice). */
async function freshTotp(secret, usedStep) {
  while (Math.floor(Date.now() / 30_000) <= usedStep) await new Promise((wait) => setTimeout(wait, 500));
  const step = Math.floor(Date.now() / 30_000);
  return { code: totp(secret, step), step };
}

// --- the page ------------------------------------------------------------------------------

/**
 * A page with the test's guards: a console error fails the run unless the step declared the
 * failed status (Chromium logs every 4xx answer as a console error), and any request that
 * leaves the origin fails it.
 */
async function guardedPage(context, name) {
  const page = await context.newPage();
  page.setDefaultTimeout(STEP_TIMEOUT_MS);
  page.expected = [];
  page.on("console", (message) => {
    if (message.type() !== "error") return;
    const status = /status of (\d{3})/.exec(message.text())?.[1];
    const networkFailure = /net::ERR_FAILED/.test(message.text());
    const expected = page.expected.find((e) => e === status || (networkFailure && e === "network"));
    if (!expected) problems.push(`${name} console: ${message.text()}`);
  });
  page.on("pageerror", (error) => problems.push(`${name} page error: ${error.message}`));
  page.on("request", (request) => {
    const url = request.url();
    if (!url.startsWith(`${base}/`) && !url.startsWith("data:")) {
      problems.push(`${name}: request to another origin: ${url}`);
    }
  });
  return page;
}

/** Runs `action` while the given failure statuses (or "network") are the expected outcome. */
async function expecting(page, statuses, action) {
  page.expected = statuses.map(String);
  try {
    return await action();
  } finally {
    await page.waitForTimeout(100);
    page.expected = [];
  }
}

const notice = (page, section) => page.locator(`#${section} .notice`);

async function noticeSays(page, section, text) {
  await notice(page, section).filter({ hasText: text }).waitFor();
}

async function audit(page, label) {
  const result = await new AxeBuilder({ page })
    .withTags(["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"])
    .analyze();
  for (const violation of result.violations) {
    if (violation.impact === "serious" || violation.impact === "critical") {
      accessibility.push(`${label}: ${violation.id} (${violation.impact}): ${violation.help} — ` +
        violation.nodes.slice(0, 3).map((n) => n.target.join(" ")).join(", "));
    }
  }
}

/** Desktop and phone screenshots of a section, and an accessibility check at both widths. */
async function capture(page, section, name = section) {
  for (const [width, size] of [["desktop", DESKTOP], ["phone", PHONE]]) {
    await page.setViewportSize(size);
    await page.locator(`#${section}`).screenshot({ path: join(artifacts, `${name}-${width}.png`) });
    await audit(page, `${name} (${width})`);
  }
  await page.setViewportSize(DESKTOP);
}

async function signIn(page, username, password) {
  await page.fill("#login-form [name=username]", username);
  await page.fill("#login-form [name=password]", password);
  await page.click("#login-form button[type=submit]");
}

async function signedInAs(page, username) {
  await page.locator("#who", { hasText: `Signed in as ${username}` }).waitFor();
}

async function signOut(page) {
  await page.click("#logout-button");
  await page.locator("#who", { hasText: "Not signed in" }).waitFor();
}

const filmRow = (page, name) => page.locator("#films-table tr", { has: page.locator("td", { hasText: name }) });

async function registerAndVerify(page, username, email, password) {
  const before = mailCount();
  await page.fill("#register-form [name=username]", username);
  await page.fill("#register-form [name=email]", email);
  await page.fill("#register-form [name=password]", password);
  await page.click("#register-form button[type=submit]");
  await noticeSays(page, "sign-in", `Account ${username} requested`);
  return mailedLink(email, "verify-email", before);
}

try {
  mkdirSync(artifacts, { recursive: true });

  browser = await chromium.launch({
    executablePath: chromiumPath,
    args: [
      "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync",
      `--ignore-certificate-errors-spki-list=${spki}`,
    ],
  });
  const userContext = await browser.newContext({ viewport: DESKTOP });
  const page = await guardedPage(userContext, "user page");

  // --- signed out: the page, then registration with verification ---------------------------
  await page.goto(`${base}/static/index.html`);
  check((await page.title()).includes("filmvault"), "the page did not load over HTTPS");
  // Flows whose routes other branches add are driven once the API document lists them.
  const openapi = await page.evaluate(() => fetch("/openapi.json").then((r) => r.json()));
  const has = (path) => Object.hasOwn(openapi.paths, path);
  await filmRow(page, "Frozen").waitFor();
  check(await page.locator("#films-table button[data-action]").count() === 0,
    "vote or edit controls shown to a visitor");
  check(await page.locator("#film-form").isHidden(), "the add form is shown to a visitor");
  await capture(page, "sign-in");

  const username = `browser_${Date.now() % 100000}`;
  const email = `${username}@example.com`;
  let password = "violet-kettle-umbrella-42";
  const verifyLink = await registerAndVerify(page, username, email, password);

  // Before verification: the problem's title and its request id, no stale message after.
  await expecting(page, [403], async () => {
    await signIn(page, username, password);
    await notice(page, "sign-in").locator(".request-id").waitFor();
  });
  check((await notice(page, "sign-in").getAttribute("class")).includes("error"), "the refusal is not an error");

  await page.goto(verifyLink);
  await page.locator("#global-notice", { hasText: "Your email address is verified" }).waitFor();
  check((await page.evaluate(() => location.hash)) === "", "the token stayed in the address bar");

  // A problem with field errors: each next to its field.
  await expecting(page, [422], async () => {
    await page.fill("#register-form [name=username]", "field_errors");
    await page.fill("#register-form [name=email]", "fields@example.com");
    await page.fill("#register-form [name=password]", "password1234");
    await page.click("#register-form button[type=submit]");
    await page.locator("#register-form .field-error").first().waitFor();
  });
  check(await page.locator("#register-form [aria-invalid=true]").count() >= 1, "the field at fault is not marked");

  await signIn(page, username, password);
  await signedInAs(page, username);
  check(await page.locator("#register-form .field-error").count() === 0, "a stale field error survived");
  check(await notice(page, "sign-in").textContent() === "", "a stale message survived");
  const stored = await page.evaluate(() => localStorage.length + sessionStorage.length + document.cookie.length);
  check(stored === 0, "something was stored in web storage or a cookie");

  // --- films ------------------------------------------------------------------------------
  const payload = `<img src=x onerror="window.__xss = true">`;
  await page.fill("#film-form [name=name]", payload);
  await page.fill("#film-form [name=studio]", "Browser <b>Studio</b>");
  await page.fill("#film-form [name=year]", "2024");
  await page.click("#film-submit");
  await noticeSays(page, "films", "Added");
  await page.click("#next-page");
  const mine = filmRow(page, "Browser <b>Studio</b>");
  await mine.waitFor();
  check(await page.locator("#page-info").textContent() === "Films 21–21 of 21", "paging is wrong");
  const cells = await mine.locator("td").allTextContents();
  check(cells[0] === payload, `the XSS name is not shown literally: ${cells[0]}`);
  check(await page.locator("#films-table img, #films-table b").count() === 0, "server values became elements");
  check(await page.evaluate(() => window.__xss) === undefined, "the XSS payload ran");
  check(await mine.locator("[data-action=edit]").count() === 1, "no edit control on one's own film");

  await mine.locator("[data-action=like]").click();
  await mine.locator("[data-action=like][aria-pressed=true]").waitFor();
  check((await mine.locator("[data-action=like]").textContent()).trim() === "Like 1", "the like is not counted");
  await mine.locator("[data-action=dislike]").click();
  await mine.locator("[data-action=dislike][aria-pressed=true]").waitFor();
  check(await mine.locator("[aria-pressed=true]").count() === 1, "two votes shown at once");
  await mine.locator("[data-action=dislike]").click();
  await noticeSays(page, "films", "Vote withdrawn");
  check(await mine.locator("[aria-pressed=true]").count() === 0, "the withdrawn vote is still shown");
  check((await mine.locator("[data-action=dislike]").textContent()).trim() === "Dislike 0", "the vote was not withdrawn");

  await page.click("#previous-page");
  const frozen = filmRow(page, "Frozen");
  await frozen.waitFor();
  check(await frozen.locator("[data-action=edit], [data-action=delete]").count() === 0,
    "edit or delete offered on a film the caller may not change");
  await frozen.locator("[data-action=like]").click();
  await frozen.locator("[data-action=like][aria-pressed=true]").waitFor();
  // One's votes come from the server (GET /users/me/votes): signing out forgets them on the
  // page, and a new sign-in still shows the like.
  await signOut(page);
  // Signed out, the table is drawn again without vote buttons (once the list is reloaded).
  await filmRow(page, "Frozen").locator("span.muted").waitFor();
  check(await filmRow(page, "Frozen").locator("[aria-pressed=true]").count() === 0,
    "a vote is shown to nobody signed in");
  await signIn(page, username, password);
  await signedInAs(page, username);
  await filmRow(page, "Frozen").locator("[data-action=like][aria-pressed=true]").waitFor();

  await page.fill("#search-form [name=q]", "onerror");
  await page.click("#search-form button[type=submit]");
  await page.locator("#page-info", { hasText: "of 1" }).waitFor();
  await mine.locator("[data-action=edit]").click();
  await page.fill("#film-form [name=name]", "Renamed in the browser");
  await page.click("#film-submit");
  await noticeSays(page, "films", "Saved");
  await page.fill("#search-form [name=q]", "Renamed");
  await page.click("#search-form button[type=submit]");
  const renamed = filmRow(page, "Renamed in the browser");
  await renamed.waitFor();

  // Lost updates: a save sends the tag of the version the form opened (If-Match), so what
  // someone saved in between is not overwritten: 412, and the form shows their version.
  await renamed.locator("[data-action=edit]").click();
  await page.locator("#film-form-title", { hasText: "Edit" }).waitFor();
  const filmId = await page.inputValue("#film-form [name=id]");
  const elsewhere = await page.evaluate(async ([u, p, id]) => {
    const json = { "Content-Type": "application/json" };
    const { access_token: token } = await fetch("/api/v1/auth/login", {
      method: "POST", headers: json, body: JSON.stringify({ username: u, password: p }),
    }).then((r) => r.json());
    const auth = { ...json, Authorization: `Bearer ${token}` };
    const status = await fetch(`/api/v1/films/${id}`, {
      method: "PATCH", headers: auth, body: JSON.stringify({ studio: "Changed elsewhere" }),
    }).then((r) => r.status);
    await fetch("/api/v1/auth/logout", { method: "POST", headers: auth });
    return status;
  }, [username, password, filmId]);
  check(elsewhere === 200, `the change made elsewhere failed: ${elsewhere}`);
  await page.fill("#film-form [name=name]", "Overwrites nothing");
  await expecting(page, [412], async () => {
    await page.click("#film-submit");
    await noticeSays(page, "films", "changed this film since you opened it");
  });
  const shown = [await page.inputValue("#film-form [name=name]"),
    await page.inputValue("#film-form [name=studio]")];
  check(shown[0] === "Renamed in the browser" && shown[1] === "Changed elsewhere",
    `after a 412 the form does not show the version saved elsewhere: ${shown}`);
  await page.click("#film-cancel");

  await page.click("#random-button");
  await noticeSays(page, "films", "A random film");

  await expecting(page, ["network"], async () => {
    await page.route("**/api/v1/films?**", (route) => route.abort("failed"));
    await page.click("#search-form button[type=submit]");
    await noticeSays(page, "films", "Network failure");
    await page.unroute("**/api/v1/films?**");
  });

  await renamed.locator("[data-action=delete]").click();
  await page.locator("#confirm-dialog").waitFor();
  await audit(page, "films with the delete dialog");
  await page.click("#confirm-dialog button[value=no]");
  check(await renamed.count() === 1, "a cancelled delete deleted");
  await renamed.locator("[data-action=delete]").click();
  await page.click("#confirm-yes");
  await noticeSays(page, "films", "Deleted");
  check(await renamed.count() === 0, "the deleted film is still listed");
  await page.fill("#search-form [name=q]", "");
  await page.click("#search-form button[type=submit]");
  await page.locator("#page-info", { hasText: "of 20" }).waitFor();
  await capture(page, "films");

  // --- API keys -----------------------------------------------------------------------------
  await page.fill("#key-form [name=name]", "browser script");
  await page.check("#key-form [value=write]");
  await page.click("#key-form button[type=submit]");
  const secret = notice(page, "api-keys").locator(".secret");
  await secret.waitFor();
  const key = await secret.textContent();
  check(await notice(page, "api-keys").getByRole("button", { name: "Copy" }).count() === 1, "no copy button");
  const keyRow = page.locator("#keys-table tr", { hasText: "browser script" });
  await keyRow.waitFor();
  check(!(await keyRow.textContent()).includes(key), "the key's secret is listed");
  const withKey = (k) => page.evaluate((value) =>
    fetch("/api/v1/users/me", { headers: { "X-API-Key": value } }).then((r) => r.status), k);
  check(await withKey(key) === 200, "the new key does not work");
  await capture(page, "api-keys");
  await keyRow.getByRole("button", { name: /Revoke/ }).click();
  await page.click("#confirm-yes");
  await noticeSays(page, "api-keys", "Revoked");
  check(await keyRow.count() === 0, "the revoked key is still listed");
  check(await expecting(page, [401], () => withKey(key)) === 401, "the revoked key still works");

  // --- sessions -----------------------------------------------------------------------------
  const otherLogin = () => page.evaluate(([u, p]) => fetch("/api/v1/auth/login", {
    method: "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ username: u, password: p }),
  }).then((r) => r.status), [username, password]);
  check(await otherLogin() === 200 && await otherLogin() === 200, "could not open other sessions");
  await page.click("a[href='#sessions']");
  await page.reload().catch(() => {});
  // A reload forgets the tokens: the page asks to sign in again.
  await page.locator("#who", { hasText: "Not signed in" }).waitFor();
  await signIn(page, username, password);
  await signedInAs(page, username);
  const sessionRows = page.locator("#sessions-table tr");
  await page.waitForFunction(() => document.querySelectorAll("#sessions-table tr").length === 4);
  check(await sessionRows.filter({ hasText: "This browser" }).count() === 1, "the current session is not marked");
  await sessionRows.getByRole("button", { name: /End the session/ }).first().click();
  await noticeSays(page, "sessions", "That session is ended");
  check(await sessionRows.count() === 3, "the ended session is still listed");
  await capture(page, "sessions");
  await page.click("#end-other-sessions");
  await noticeSays(page, "sessions", "Every other session");
  check(await sessionRows.count() === 1, "other sessions survived");

  // --- account: email change, password change ---------------------------------------------
  await capture(page, "account");
  if (has("/api/v1/users/me/email")) {
    const newEmail = `${username}.new@example.com`;
    const before = mailCount();
    await page.fill("#email-form [name=new_email]", newEmail);
    await page.fill("#email-form [name=password]", password);
    await page.click("#email-form button[type=submit]");
    await noticeSays(page, "account", "Check the new address");
    // Opened in the tab that is signed in: only the fragment changes.
    await page.goto(await mailedLink(newEmail, "confirm-email", before));
    await page.locator("#global-notice", { hasText: "new email address is confirmed" }).waitFor();
    await page.locator("#profile-email", { hasText: newEmail }).waitFor();
  } else {
    skipped.push("email change (PUT /api/v1/users/me/email is not in this build)");
  }

  // Step-up: a "reauthentication-required" answer (here the server's problem, replayed for a
  // session the server would still find young enough) makes the page ask for a fresh sign-in.
  await expecting(page, [401], async () => {
    await page.route("**/api/v1/users/me/password", (route) => route.fulfill({
      status: 401,
      contentType: "application/problem+json",
      body: JSON.stringify({ type: "/problems/reauthentication-required", status: 401,
        title: "Reauthentication required", detail: "Log in again, then retry." }),
    }), { times: 1 });
    await page.fill("#password-form [name=current_password]", password);
    await page.fill("#password-form [name=new_password]", "not-used-password-77");
    await page.click("#password-form button[type=submit]");
    await page.locator("#global-notice", { hasText: "fresh sign-in" }).waitFor();
    await page.locator("#who", { hasText: "Not signed in" }).waitFor();
  });
  await signIn(page, username, password);
  await signedInAs(page, username);

  const newPassword = "copper-meadow-lighthouse-58";
  await page.fill("#password-form [name=current_password]", password);
  await page.fill("#password-form [name=new_password]", newPassword);
  await page.click("#password-form button[type=submit]");
  await page.locator("#global-notice", { hasText: "Password changed" }).waitFor();
  await page.locator("#who", { hasText: "Not signed in" }).waitFor();
  password = newPassword;

  // --- password reset by mail ---------------------------------------------------------------
  const currentEmail = await (async () => (has("/api/v1/users/me/email") ? `${username}.new@example.com` : email))();
  const beforeReset = mailCount();
  await page.fill("#forgot-form [name=email]", currentEmail);
  await page.click("#forgot-form button[type=submit]");
  await noticeSays(page, "sign-in", "reset link is on its way");
  await page.goto(await mailedLink(currentEmail, "reset-password", beforeReset));
  await page.locator("#reset-form").waitFor();
  password = "saffron-glacier-teapot-31";
  await page.fill("#reset-form [name=new_password]", password);
  await page.click("#reset-form button[type=submit]");
  await noticeSays(page, "sign-in", "Password changed");
  await signIn(page, username, password);
  await signedInAs(page, username);

  // --- two-factor sign-in -------------------------------------------------------------------
  if (has("/api/v1/users/me/mfa/totp") && has("/api/v1/auth/login/mfa")) {
    await page.click("#mfa-start-form button[type=submit]");
    const qr = page.locator("#mfa-enrolment img");
    await qr.waitFor();
    check(await qr.evaluate((img) => img.complete && img.naturalWidth > 0), "the QR code did not render");
    await capture(page, "mfa", "mfa-enrolment");
    const mfaSecret = (await page.locator("#mfa-enrolment .secret").textContent()).trim();
    let used = Math.floor(Date.now() / 30_000);
    await page.fill("#mfa-confirm-form [name=code]", totp(mfaSecret, used));
    await page.click("#mfa-confirm-form button[type=submit]");
    const codes = notice(page, "mfa").locator(".secret");
    await codes.waitFor();
    const recovery = (await codes.textContent()).split("\n").filter(Boolean);
    check(recovery.length >= 8, `recovery codes not shown: ${recovery.length}`);
    await capture(page, "mfa");
    await signOut(page);
    await signIn(page, username, password);
    await page.locator("#mfa-login-form").waitFor();
    await page.fill("#mfa-login-form [name=code]", recovery[0]);
    await page.click("#mfa-login-form button[type=submit]");
    await signedInAs(page, username);
    const fresh = await freshTotp(mfaSecret, used);
    used = fresh.step;
    await page.fill("#mfa-disable-form [name=password]", password);
    await page.fill("#mfa-disable-form [name=code]", fresh.code);
    await page.click("#mfa-disable-form button[type=submit]");
    await noticeSays(page, "mfa", "Two-factor sign-in is off");
  } else {
    skipped.push("two-factor enrolment and sign-in (the /mfa routes are not in this build)");
    await capture(page, "mfa");
  }

  // --- token renewal before expiry, on a page with a fake clock -----------------------------
  const clockContext = await browser.newContext({ viewport: DESKTOP });
  const clockPage = await guardedPage(clockContext, "renewal page");
  await clockPage.clock.install();
  await clockPage.goto(`${base}/static/index.html`);
  await signIn(clockPage, username, password);
  await signedInAs(clockPage, username);
  const renewal = clockPage.waitForResponse((r) => r.url().endsWith("/api/v1/auth/refresh"));
  await clockPage.clock.fastForward(15 * 60_000 - 30_000);
  check((await renewal).status() === 200, "the access token was not renewed before expiry");
  await clockPage.click("a[href='#api-keys']");
  await clockPage.fill("#key-form [name=name]", "after renewal");
  await clockPage.click("#key-form button[type=submit]");
  await noticeSays(clockPage, "api-keys", "created");
  await clockContext.close();

  // --- administration -----------------------------------------------------------------------
  const adminContext = await browser.newContext({ viewport: DESKTOP });
  const adminPage = await guardedPage(adminContext, "admin page");
  await adminPage.goto(`${base}/static/index.html`);
  await signIn(adminPage, admin.username, admin.password);
  await signedInAs(adminPage, admin.username);
  const userRow = adminPage.locator("#users-table tr", { hasText: username });
  await userRow.waitFor();
  await userRow.getByRole("button", { name: `Sessions of ${username}` }).click();
  await adminPage.locator("#admin-user-sessions li").first().waitFor();
  await adminPage.getByRole("button", { name: "End all their sessions" }).click();
  await adminPage.click("#confirm-yes");
  await noticeSays(adminPage, "admin", `Every session of ${username} is ended`);

  // The user's page: its next request is refused, renewal fails, the page asks to sign in.
  await expecting(page, [401], async () => {
    await filmRow(page, "Frozen").locator("[data-action=dislike]").click();
    await page.locator("#global-notice", { hasText: "Your session ended" }).waitFor();
  });
  await page.locator("#who", { hasText: "Not signed in" }).waitFor();

  await userRow.getByRole("button", { name: `Disable ${username}` }).click();
  await noticeSays(adminPage, "admin", `${username} is disabled`);
  await expecting(page, [401, 403], async () => {
    await signIn(page, username, password);
    await notice(page, "sign-in").locator(".title").waitFor();
  });
  await userRow.getByRole("button", { name: `Enable ${username}` }).click();
  await noticeSays(adminPage, "admin", `${username} is enabled`);
  await userRow.getByRole("combobox").selectOption("admin");
  await noticeSays(adminPage, "admin", `${username} is now an admin`);
  await userRow.getByRole("combobox").selectOption("user");
  await noticeSays(adminPage, "admin", `${username} is now a user`);

  await adminPage.selectOption("#audit-form [name=action]", "admin.user_disable");
  await adminPage.click("#audit-form button[type=submit]");
  await adminPage.locator("#audit-info", { hasText: "of 1" }).waitFor();
  const actions = await adminPage.locator("#audit-table tr td:nth-child(2)").allTextContents();
  check(actions.length === 1 && actions[0] === "admin.user_disable", `audit filter: ${actions}`);
  await adminPage.click("#mails-form button[type=submit]");
  await adminPage.locator("#mails-info", { hasText: "0 dead mails" }).waitFor();
  await capture(adminPage, "admin");

  // A 429: the wait is shown.
  await expecting(page, [401, 429], async () => {
    for (let attempt = 0; attempt < 30; attempt += 1) {
      await signIn(page, "nobody_here", "wrong-password-123456");
      await notice(page, "sign-in").locator(".title").waitFor();
      if ((await notice(page, "sign-in").textContent()).includes("try again in")) return;
    }
    throw new Error("no 429 with its wait after 30 failed logins");
  });

  await adminContext.close();

  // --- the API docs keep working under their own CSP ----------------------------------------
  const docs = await guardedPage(userContext, "docs page");
  await docs.goto(`${base}/docs/`);
  await docs.waitForSelector(".opblock", { timeout: 15_000 });
  check(await docs.locator(".opblock").count() >= 20, "the docs do not list the operations");
  await docs.screenshot({ path: join(artifacts, "docs.png") });

  check(problems.length === 0, `errors in the browser (CSP violations included):\n${problems.join("\n")}`);
  check(accessibility.length === 0, `serious or critical accessibility violations:\n${accessibility.join("\n")}`);
  for (const step of skipped) console.log(`not driven: ${step}`);
  console.log(`browser test passed: ${base} (screenshots in ${artifacts})`);
} catch (error) {
  fail(`${error.stack ?? error.message}\n${problems.join("\n")}\n${accessibility.join("\n")}`);
} finally {
  await browser?.close();
  server.kill();
}
