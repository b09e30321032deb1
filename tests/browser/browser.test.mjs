// Real-browser test of the test page, over HTTPS with a freshly generated dev certificate,
// in Debian's headless Chromium driven by playwright-core.
//
//   node tests/browser/browser.test.mjs     (after cargo build; FILMVAULT_BIN=path overrides)
//
// Logs in, adds a film, likes it, checks the counts, proves a film named like an XSS payload
// renders as text, exercises HEAD /add_film and the raw panel, loads the API docs, fails on
// any CSP violation or page error, and saves screenshots to tests/browser/artifacts/.
// Without Chromium it fails loudly: it never passes by skipping.
import { spawn, spawnSync } from "node:child_process";
import { createHash, X509Certificate } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, readFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, "../..");
const binary = resolve(
  root,
  process.env.FILMVAULT_BIN ?? join(process.env.CARGO_TARGET_DIR ?? "target", "debug", "filmvault"),
);
const chromiumPath = process.env.CHROMIUM ?? "/usr/bin/chromium";
const artifacts = join(here, "artifacts");

let server;

function fail(message) {
  server?.kill();
  console.error(`\n${"!".repeat(72)}\nBROWSER TEST FAILED: ${message}\n${"!".repeat(72)}\n`);
  process.exit(1);
}

if (!existsSync(chromiumPath)) {
  fail(`no Chromium at ${chromiumPath}; install Debian's chromium (apt-get install chromium). ` +
    "The browser test was NOT run.");
}
if (!existsSync(binary)) fail(`no filmvault binary at ${binary}; run cargo build first`);

function freePort() {
  return new Promise((resolvePort, reject) => {
    const server = createServer();
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => resolvePort(port));
    });
    server.on("error", reject);
  });
}

const work = mkdtempSync(join(tmpdir(), "filmvault-browser-"));
const certs = join(work, "certs");
const devCert = spawnSync(binary, ["dev-cert", "--out-dir", certs], { encoding: "utf8" });
if (devCert.status !== 0) fail(`dev-cert failed: ${devCert.stderr}`);

// Chromium trusts exactly this certificate's key, nothing more.
const leaf = new X509Certificate(readFileSync(join(certs, "localhost.crt")));
const spki = createHash("sha256")
  .update(leaf.publicKey.export({ type: "spki", format: "der" }))
  .digest("base64");

const [httpPort, httpsPort] = [await freePort(), await freePort()];
server = spawn(binary, [], {
  cwd: work,
  env: {
    PATH: process.env.PATH,
    APP_PORT: String(httpPort),
    HTTPS_PORT: String(httpsPort),
    TLS_CERT_PATH: join(certs, "localhost.crt"),
    TLS_KEY_PATH: join(certs, "localhost.key"),
    DATABASE_URL: `sqlite://${join(work, "filmvault.db")}`,
    SEED_DEMO_DATA: "true",
    RUST_LOG: "info",
    LOG_FORMAT: "json",
  },
  stdio: ["ignore", "pipe", "pipe"],
});
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

const base = `https://localhost:${httpsPort}`;
const problems = [];
let browser;

function check(condition, message) {
  if (!condition) throw new Error(message);
}

try {
  browser = await chromium.launch({
    executablePath: chromiumPath,
    args: [
      "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync",
      `--ignore-certificate-errors-spki-list=${spki}`,
    ],
  });
  const page = await browser.newPage();
  page.on("console", (message) => {
    if (message.type() === "error") problems.push(`console: ${message.text()}`);
  });
  page.on("pageerror", (error) => problems.push(`page error: ${error.message}`));

  await page.goto(`${base}/static/index.html`);
  check((await page.title()).includes("filmvault"), "the test page did not load over HTTPS");
  await page.waitForSelector("#films-table tr");

  const username = `browser_${Date.now() % 100000}`;
  const password = "violet-kettle-umbrella-42";
  await page.fill("#register-form [name=username]", username);
  await page.fill("#register-form [name=email]", `${username}@example.com`);
  await page.fill("#register-form [name=password]", password);
  await page.click("#register-form button[type=submit]");
  await page.waitForFunction(() => document.querySelector("#messages").textContent.includes("Registered"));

  await page.fill("#login-form [name=username]", username);
  await page.fill("#login-form [name=password]", password);
  await page.click("#login-form button[type=submit]");
  await page.waitForFunction(() => document.querySelector("#session").textContent.includes("Signed in as"));
  const session = await page.textContent("#session");
  check(/expires at .+ \(in \d+ s\)/.test(session), `no token expiry shown: ${session}`);

  const payload = `<img src=x onerror="window.__xss = true">`;
  await page.fill("#film-form [name=name]", payload);
  await page.fill("#film-form [name=studio]", "Browser <b>Studio</b>");
  await page.fill("#film-form [name=year]", "2024");
  await page.click("#film-submit");
  await page.waitForFunction(() => document.querySelector("#messages").textContent.includes("Added"));
  const row = page.locator("#films-table tr", { hasText: "Browser <b>Studio</b>" });
  await row.waitFor();
  const cells = await row.locator("td").allTextContents();
  check(cells[1] === payload, `the XSS name is not shown literally: ${cells[1]}`);
  check(cells[2] === "Browser <b>Studio</b>", "markup in the studio was interpreted");
  check((await page.locator("#films-table img, #films-table b").count()) === 0,
    "server values became elements");
  check((await page.evaluate(() => window.__xss)) === undefined, "the XSS payload ran");

  await row.locator("button[data-action=like]").click();
  await page.waitForFunction(() => document.querySelector("#messages").textContent.startsWith("Liked"));
  const liked = page.locator("#films-table tr", { hasText: "Browser <b>Studio</b>" });
  const counts = await liked.locator("td").allTextContents();
  check(counts[5] === "1" && counts[6] === "0", `counts after one like: ${counts[5]}/${counts[6]}`);
  await liked.locator("button[data-action=like]").click();
  await page.waitForFunction(() => document.querySelector("#messages").textContent.startsWith("Liked"));
  const again = await page.locator("#films-table tr", { hasText: "Browser <b>Studio</b>" })
    .locator("td").allTextContents();
  check(again[5] === "1", `liking twice counted twice: ${again[5]}`);

  await page.click("#head-button");
  await page.waitForFunction(() => document.querySelector("#raw-status").textContent.startsWith("200"));

  await page.fill("#raw-form [name=path]", "/api/v1/films?limit=2");
  await page.click("#raw-form button[type=submit]");
  await page.waitForFunction(() => document.querySelector("#raw-body").textContent.includes("\"items\""));
  const highlighted = await page.locator("#raw-headers li.highlight").allTextContents();
  check(highlighted.some((h) => h.startsWith("x-ratelimit-remaining")),
    `rate-limit headers not highlighted: ${highlighted}`);

  mkdirSync(artifacts, { recursive: true });
  await page.screenshot({ path: join(artifacts, "test-page.png"), fullPage: true });

  const docs = await browser.newPage();
  docs.on("console", (message) => {
    if (message.type() === "error") problems.push(`docs console: ${message.text()}`);
  });
  docs.on("pageerror", (error) => problems.push(`docs page error: ${error.message}`));
  await docs.goto(`${base}/docs/`);
  await docs.waitForSelector(".opblock", { timeout: 15_000 });
  check((await docs.locator(".opblock").count()) >= 20, "the docs do not list the operations");
  await docs.screenshot({ path: join(artifacts, "docs.png") });

  check(problems.length === 0, `errors in the browser (CSP violations included):\n${problems.join("\n")}`);
  console.log(`browser test passed: ${base} (screenshots in ${artifacts})`);
} catch (error) {
  fail(`${error.message}\n${problems.join("\n")}`);
} finally {
  await browser?.close();
  server.kill();
}
