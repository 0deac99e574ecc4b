// The page in a real headless Chromium (Debian's, driven by playwright-core): it loads without
// console errors, gets a WebGPU adapter (SwiftShader with --enable-unsafe-webgpu), and its
// self-check passes: the WGSL kernels compiled by the browser's own shader compiler agree with
// the CPU backend compiled to wasm. Without WebGPU the page must say so.
//
// Run after `trunk build` (scripts/test does both): node --test tests/web/
// Screenshots go to target/web-artifacts/.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { createServer } from "node:http";
import { readFile, mkdir } from "node:fs/promises";
import { extname, join, normalize } from "node:path";
import { chromium } from "playwright-core";

const DIST = "dist";
const ARTIFACTS = "target/web-artifacts";
const TYPES = { ".html": "text/html", ".js": "text/javascript", ".wasm": "application/wasm", ".css": "text/css" };

let server;
let origin;

before(async () => {
  await mkdir(ARTIFACTS, { recursive: true });
  server = createServer(async (req, res) => {
    const path = normalize(decodeURIComponent(new URL(req.url, "http://x").pathname)).replace(/^(\.\.[/\\])+/, "");
    const file = join(DIST, path.endsWith("/") ? `${path}index.html` : path);
    try {
      const body = await readFile(file);
      res.writeHead(200, { "content-type": TYPES[extname(file)] ?? "application/octet-stream" });
      res.end(body);
    } catch {
      res.writeHead(404).end();
    }
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  origin = `http://127.0.0.1:${server.address().port}/`;
});

after(() => server.close());

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

async function openPage(args) {
  const browser = await chromium.launch({ executablePath: "/usr/bin/chromium", headless: true, args: [...BASE_ARGS, ...args] });
  const page = await browser.newPage();
  const errors = [];
  page.on("console", (m) => m.type() === "error" && errors.push(m.text()));
  page.on("pageerror", (e) => errors.push(String(e)));
  await page.goto(origin);
  await page.waitForFunction(() => document.getElementById("status").dataset.state !== "loading", null, { timeout: 60_000 });
  return { browser, page, errors };
}

test("with WebGPU the page finds an adapter and its self-check passes", { timeout: 600_000 }, async () => {
  const { browser, page, errors } = await openPage(["--enable-unsafe-webgpu"]);
  try {
    const state = await page.getAttribute("#status", "data-state");
    assert.ok(["ready", "warning"].includes(state), `engine status: ${await page.textContent("#status")}`);
    await page.click("#selftest-run");
    await page.waitForFunction(
      () => ["ready", "error"].includes(document.getElementById("selftest-status").dataset.state),
      null,
      { timeout: 540_000, polling: 500 },
    );
    await page.screenshot({ path: `${ARTIFACTS}/selftest.png`, fullPage: true });
    const rows = await page.$$eval("#selftest-results tbody tr", (trs) => trs.map((tr) => tr.innerText.replace(/\t/g, "  ")));
    console.log(`self-check in Chromium:\n  ${rows.join("\n  ")}\n  ${await page.textContent("#selftest-status")}`);
    assert.equal(await page.getAttribute("#selftest-status", "data-state"), "ready", await page.textContent("#selftest-status"));
    assert.ok(rows.length >= 8, "every check reported");
    assert.deepEqual(errors, [], "console errors");
  } finally {
    await browser.close();
  }
});

test("without WebGPU the page explains what it needs", { timeout: 120_000 }, async () => {
  const { browser, page } = await openPage([]);
  try {
    await page.screenshot({ path: `${ARTIFACTS}/no-webgpu.png`, fullPage: true });
    assert.equal(await page.getAttribute("#status", "data-state"), "error");
    assert.match(await page.textContent("#status"), /WebGPU/);
  } finally {
    await browser.close();
  }
});
