// What a person gets per minute of training in the page (scripts/time-to-digits, not a test):
// for each number of minutes, a fresh headless Chromium opens the built page, plans a run for
// that long (the "Train for" choice, as a person picks it) by the chosen route, trains it to
// the end of its plan, and downloads the run for `cm eval`. Prints one JSON line per run.
//
//   node tests/web/time-to-digits.mjs DIST OUT ROUTE MINUTES...
//
// ROUTE: "scratch" (Reset with the page's defaults, then Train) or "teacher" (the one click
// "From the teacher"). The page picks its backend itself: WebGPU when the adapter is real
// hardware, else its CPU backend (a software adapter such as SwiftShader is not used).

import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { openPage, serve } from "./browser.mjs";

const [dist, out, route, ...minutesList] = process.argv.slice(2);
if (!dist || !out || !["scratch", "teacher"].includes(route) || minutesList.length === 0) {
  console.error("usage: node tests/web/time-to-digits.mjs DIST OUT scratch|teacher MINUTES...");
  process.exit(2);
}
await mkdir(out, { recursive: true });
const site = await serve(dist, "/consistency/");

// Offers `minutes` in the page's "Train for" choice and picks it (the page offers 3 and 10).
async function chooseMinutes(page, minutes) {
  await page.$eval(
    "#train-minutes",
    (select, m) => {
      if (![...select.options].some((o) => o.value === m)) select.add(new Option(`about ${m} minutes`, m));
      select.value = m;
      select.dispatchEvent(new Event("change", { bubbles: true }));
    },
    String(minutes),
  );
}

const statusText = (page) => page.$eval("#train-status", (s) => s.textContent);

for (const minutes of minutesList.map(Number)) {
  const { browser, page, errors } = await openPage(site.origin, ["--enable-unsafe-webgpu"]);
  try {
    await chooseMinutes(page, minutes);
    const started = Date.now();
    if (route === "teacher") {
      await page.click("#train-from-teacher");
    } else {
      await page.click("#train-reset");
      await page.waitForFunction(() => document.getElementById("train-status").textContent.includes("fresh run"), null, {
        timeout: 120_000,
      });
      await page.click("#train-run");
    }
    // The run stops by itself at the end of its plan (K); past twice the minutes it is paused.
    await page.waitForFunction(() => document.getElementById("train-status").textContent.includes("Training"), null, {
      timeout: 300_000,
    });
    const ended = () => /Reached step|Paused at step/.test(document.getElementById("train-status").textContent);
    const stopped = await page
      .waitForFunction(ended, null, { timeout: 2 * minutes * 60_000, polling: 1000 })
      .then(() => true, () => false);
    if (!stopped) {
      await page.click("#train-pause");
      await page.waitForFunction(ended, null, { timeout: 300_000, polling: 1000 });
    }
    const seconds = (Date.now() - started) / 1000;
    const facts = await page.evaluate(() => ({
      step: document.getElementById("stat-step").textContent,
      rate: Number(document.getElementById("stat-rate").textContent),
      lag: document.getElementById("stat-lag").textContent,
      backend: document.getElementById("run-info").textContent,
      legible: Number(document.getElementById("readout").dataset.legible),
      readings: JSON.parse(document.getElementById("readout").dataset.readings || "[]"),
    }));
    const download = page.waitForEvent("download");
    await page.click("#train-download");
    const file = join(out, `${route}-${minutes}min.safetensors`);
    await (await download).saveAs(file);
    console.log(JSON.stringify({ route, minutes, seconds, file, status: await statusText(page), ...facts, errors }));
  } finally {
    await browser.close();
  }
}
site.close();
