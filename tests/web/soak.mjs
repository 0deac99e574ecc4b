// The soak: a long training run in the page on its CPU backend, watched for what a person would
// suffer from only after minutes. It reads the memory the page and each CPU worker hold (the
// Engine panel's reading, taken with every preview) once training is warm and again at the end,
// the longest task on the page's thread and the Train panel's "input delay" while training, then
// pauses, reloads and checks that the autosaved run comes back at the step it paused at.
// tests/web/soak.test.mjs runs it for a minute; scripts/soak for 30.

import { longestTask, openPage, openSettings, serve, watchLongTasks } from "./browser.mjs";

const memory = (page) => page.$eval("#engine-memory", (p) => JSON.parse(p.dataset.memory));
const stepOf = async (page) => Number((await page.textContent("#stat-step")).split("/")[0]);

// Trains a fresh run with the page's defaults (K far away) on the CPU path for `minutes`; the
// first reading of memory is taken `warm` minutes in. Resolves to what it measured.
export async function soak(origin, minutes, warm) {
  let { browser, page, errors } = await openPage(origin, []);
  try {
    // (The page's own "input delay" also counts time the OS gave the thread to others.)
    await watchLongTasks(page);
    await page.fill('input[name="totalSteps"]', "1000000");
    await page.click("#train-reset");
    await page.waitForFunction(() => document.getElementById("train-status").textContent.includes("fresh run"), null, {
      timeout: 120_000,
    });
    await page.click("#train-run");
    const started = Date.now();
    await page.waitForTimeout(warm * 60_000);
    const start = { step: await stepOf(page), memory: await memory(page) };
    await page.waitForTimeout(Math.max(0, minutes * 60_000 - (Date.now() - started)));
    const end = { step: await stepOf(page), memory: await memory(page) };
    const lag = Number.parseFloat(await page.textContent("#stat-lag"));
    const longest = await longestTask(page);
    await page.click("#train-pause");
    await page.waitForFunction(() => document.getElementById("train-status").textContent.includes("Paused at step"), null, {
      timeout: 300_000,
    });
    const paused = await stepOf(page);
    const seconds = (Date.now() - started) / 1000;

    await page.reload();
    await page.waitForFunction(() => document.body.dataset.ready === "true", null, { timeout: 300_000, polling: 500 });
    await openSettings(page);
    const restored = { step: await stepOf(page), status: await page.textContent("#train-status") };
    return { minutes, seconds, start, end, lag, longestTask: longest, paused, restored, errors };
  } finally {
    await browser.close();
  }
}

// What the soak asks of the page: WebAssembly memory flat once warm (it never shrinks, so any
// growth would stay), the JavaScript heap within bounds, no task on the page's thread over 500
// ms, the paused run restored after a reload. Returns the failures (none: an empty list).
export function soakFailures(r) {
  const failures = [];
  const MB = 1024 * 1024;
  const grown = (a, b) => b > a * 1.05 + MB;
  if (r.end.step <= r.start.step) failures.push(`no steps between the readings (${r.start.step} -> ${r.end.step})`);
  if (grown(r.start.memory.wasm, r.end.memory.wasm)) failures.push(`the page's WebAssembly memory grew: ${r.start.memory.wasm} -> ${r.end.memory.wasm} bytes`);
  r.end.memory.workers.forEach((bytes, i) => {
    if (grown(r.start.memory.workers[i], bytes)) failures.push(`worker ${i}'s WebAssembly memory grew: ${r.start.memory.workers[i]} -> ${bytes} bytes`);
  });
  if (r.start.memory.heap !== null && r.end.memory.heap > 1.5 * r.start.memory.heap + 20 * MB) {
    failures.push(`the page's JavaScript heap grew: ${r.start.memory.heap} -> ${r.end.memory.heap} bytes`);
  }
  if (!(r.longestTask <= 500)) failures.push(`a task held the page's thread for ${r.longestTask} ms while training`);
  if (r.restored.step !== r.paused) failures.push(`paused at step ${r.paused}, restored at ${r.restored.step}`);
  if (!r.restored.status.includes("Restored your run")) failures.push(`after the reload: ${r.restored.status}`);
  if (r.errors.length) failures.push(`console errors: ${r.errors.join(" | ")}`);
  return failures;
}

// `node tests/web/soak.mjs DIST MINUTES` (scripts/soak): serves the built page, prints the
// measurements, exits 1 on a failure.
if (import.meta.url === `file://${process.argv[1]}`) {
  const [dist, minutes] = process.argv.slice(2);
  const site = await serve(dist, "/consistency/");
  const result = await soak(site.origin, Number(minutes), Math.min(5, Number(minutes) / 3));
  site.close();
  console.log(JSON.stringify(result, null, 2));
  const failures = soakFailures(result);
  for (const f of failures) console.error(`soak: ${f}`);
  process.exit(failures.length ? 1 : 0);
}
