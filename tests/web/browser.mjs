// What the page tests and the page benchmark share: a static server for a built site under a
// sub-path (as GitHub Pages serves a project page), and Debian's Chromium driven by
// playwright-core.

import { createServer } from "node:http";
import { mkdir, readFile } from "node:fs/promises";
import { before, after } from "node:test";
import { extname, join, normalize } from "node:path";
import { chromium } from "playwright-core";

const TYPES = { ".html": "text/html", ".js": "text/javascript", ".wasm": "application/wasm", ".css": "text/css" };

// Serves `dist` at http://127.0.0.1:<free port><base>; resolves to { origin, close }.
export async function serve(dist, base) {
  const server = createServer(async (req, res) => {
    const url = decodeURIComponent(new URL(req.url, "http://x").pathname);
    if (!url.startsWith(base)) return res.writeHead(404).end();
    const path = normalize(url.slice(base.length)).replace(/^(\.\.[/\\])+/, "");
    const file = join(dist, path === "." || path === "" ? "index.html" : path);
    try {
      const body = await readFile(file);
      res.writeHead(200, { "content-type": TYPES[extname(file)] ?? "application/octet-stream", "content-length": body.length });
      res.end(body);
    } catch {
      res.writeHead(404).end();
    }
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  return { origin: `http://127.0.0.1:${server.address().port}${base}`, close: () => server.close() };
}

// Where the page tests put their screenshots.
export const ARTIFACTS = "target/web-artifacts";

// For a test file: serves the built site (dist/) under /consistency/ around its tests. The
// returned object gets `origin` once the server is up.
export function servedSite() {
  const site = {};
  before(async () => {
    await mkdir(ARTIFACTS, { recursive: true });
    Object.assign(site, await serve("dist", "/consistency/"));
  });
  after(() => site.close());
  return site;
}

// Flags as measured on these machines: without the background-networking ones Chromium keeps
// trying hosts this sandbox cannot reach.
const BASE_ARGS = [
  "--no-sandbox",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--disable-quic",
];

// Opens the page in a fresh headless Chromium with extra `args` ("--enable-unsafe-webgpu" for
// WebGPU) and waits for the engine's status; with `ready`, also for the first samples.
// `screen`: Playwright context options (a viewport, a phone's emulation); `init`: a script run in the
// page before its own.
export async function openPage(origin, args, { ready = true, screen = {}, init } = {}) {
  const browser = await chromium.launch({ executablePath: "/usr/bin/chromium", headless: true, args: [...BASE_ARGS, ...args] });
  const context = await browser.newContext({ acceptDownloads: true, ...screen });
  const page = await context.newPage();
  if (init) await page.addInitScript(init);
  const errors = [];
  page.on("console", (m) => m.type() === "error" && errors.push(m.text()));
  page.on("pageerror", (e) => errors.push(String(e)));
  await page.goto(origin);
  await page.waitForFunction(() => document.getElementById("status").dataset.state !== "loading", null, { timeout: 120_000 });
  if (ready) await page.waitForFunction(() => document.body.dataset.ready === "true", null, { timeout: 300_000, polling: 500 });
  await openSettings(page);
  return { browser, page, errors };
}

// Starts recording the longest task on the page's thread (a long-task observer: what a click
// or a keystroke would wait behind); `longestTask(page)` reads it in milliseconds.
export const watchLongTasks = (page) =>
  page.evaluate(() => {
    window.longestTask = 0;
    new PerformanceObserver((list) => {
      for (const task of list.getEntries()) window.longestTask = Math.max(window.longestTask, task.duration);
    }).observe({ type: "longtask" });
  });
export const longestTask = (page) => page.evaluate(() => window.longestTask);

// The tests set K themselves: Reset keeps it instead of planning it for some minutes, and the
// folded settings are opened (they sit below the first screen, which opening does not move).
// Again after a reload.
export async function openSettings(page) {
  await page.selectOption("#train-minutes", "0");
  await page.$eval("details.settings-fold", (d) => (d.open = true));
}
