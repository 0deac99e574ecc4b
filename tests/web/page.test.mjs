// The page in a real headless Chromium (Debian's, driven by playwright-core). With
// --enable-unsafe-webgpu Chromium gives a SwiftShader WebGPU adapter (a CPU emulation, ~0.1
// GFLOP/s), which the page passes over for its CPU backend unless told otherwise: the WebGPU
// tests here ask for it (`?engine=gpu`) and train the tiny network at a small batch. The tests
// of flows that do not depend on the backend run on the CPU backend, which is faster here; the
// CPU path itself is tested in cpu.test.mjs. The site is served from a sub-path, as on GitHub
// Pages, so a URL that assumes the site root fails here.
//
// Run after `trunk build --public-url /consistency/` (scripts/test does both): node --test tests/web/
// Screenshots go to target/web-artifacts/.

import { test } from "node:test";
import assert from "node:assert/strict";
import { ARTIFACTS, openPage as open, openSettings, servedSite } from "./browser.mjs";

const site = servedSite();

const webgpu = () => open(`${site.origin}?engine=gpu`, ["--enable-unsafe-webgpu"]);
const cpu = () => open(site.origin, []);

// The gray levels of a canvas (red channel), read in the page.
function canvasGray(page, id) {
  return page.$eval(`#${id}`, (canvas) => {
    const { data } = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height);
    return Array.from({ length: data.length / 4 }, (_, i) => data[4 * i]);
  });
}

async function waitForSample(page, previous) {
  await page.waitForFunction((before) => {
    const out = document.getElementById("sample-time");
    return out.dataset.ms && out.dataset.ms !== before && !document.getElementById("sample-run").disabled;
  }, previous, { timeout: 300_000, polling: 250 });
}

async function sampleAgain(page) {
  const before = await page.getAttribute("#sample-time", "data-ms");
  // Make the next sample distinguishable from the last, even at the same timing.
  await page.$eval("#sample-time", (el) => (el.dataset.ms = ""));
  await page.click("#sample-run");
  await waitForSample(page, "");
  return before;
}

// How long the page takes to run a task queued now: what a click would wait for.
const inputDelay = (page) =>
  page.evaluate(() => new Promise((resolve) => {
    const queued = performance.now();
    setTimeout(() => resolve(performance.now() - queued), 0);
  }));

test("with WebGPU the page samples digits the classifier reads, with no console errors", { timeout: 600_000 }, async () => {
  const { browser, page, errors } = await webgpu();
  try {
    assert.ok(["ready", "warning"].includes(await page.getAttribute("#status", "data-state")), await page.textContent("#status"));
    const gray = await canvasGray(page, "samples");
    const bright = gray.filter((v) => v > 128).length / gray.length;
    assert.ok(bright > 0.03 && bright < 0.5, `samples canvas has ${(100 * bright).toFixed(1)}% bright pixels`);
    const classes = await page.getAttribute("#samples", "data-classes");
    assert.equal(classes.length, 16, "the classifier read every digit");
    assert.ok(new Set(classes).size >= 5, `the classifier reads a variety of digits: ${classes}`);
    console.log(`one-step sampling, 16 digits of the small network: ${await page.getAttribute("#sample-time", "data-ms")} ms; classifier reads ${classes}`);
    await page.screenshot({ path: `${ARTIFACTS}/sample.png`, fullPage: true });
    assert.deepEqual(errors, [], "console errors");
  } finally {
    await browser.close();
  }
});

test("training the tiny network lowers the loss, pauses and resumes, and a downloaded run uploads to the same samples", { timeout: 900_000 }, async () => {
  const { browser, page, errors } = await webgpu();
  try {
    await page.selectOption('select[name="widths"]', "tiny");
    await page.selectOption('select[name="recipe"]', "original");
    await page.fill('input[name="batch"]', "4");
    await page.fill('input[name="lr"]', "0.002");
    await page.fill('input[name="totalSteps"]', "400");
    await page.click("#train-reset");
    await page.waitForFunction(() => document.getElementById("train-status").textContent.includes("fresh run"), null, { timeout: 120_000 });
    assert.match(await page.textContent("#stat-step"), /^0 \/ 400/);

    await page.click("#train-run");
    const delays = [];
    const points = () => page.evaluate(() => document.getElementById("stat-step").textContent);
    // Train until 6 steps are done, asking how responsive the page is meanwhile.
    for (let i = 0; i < 600; i++) {
      delays.push(await inputDelay(page));
      const step = parseInt(await points(), 10);
      if (step >= 6) break;
      await page.waitForTimeout(500);
    }
    await page.click("#train-pause");
    await page.waitForFunction(() => document.getElementById("train-status").textContent.startsWith("Paused"), null, { timeout: 300_000 });
    const paused = parseInt(await points(), 10);
    const losses = JSON.parse(await page.getAttribute("#loss-chart", "data-points"));
    const rate = await page.textContent("#stat-rate");
    const lag = await page.textContent("#stat-lag");
    console.log(`tiny, batch 4: ${rate} steps/s; losses ${losses.map(([s, l]) => `${s}:${l.toPrecision(3)}`).join(" ")}`);
    console.log(`while training: page input delay max ${Math.max(...delays).toFixed(0)} ms (median ${delays.sort((a, b) => a - b)[delays.length >> 1].toFixed(0)} ms); the page's own measure: ${lag}`);
    assert.ok(paused >= 6, `trained to step ${paused}`);
    const mean = (xs) => xs.reduce((a, [, l]) => a + l, 0) / xs.length;
    const third = Math.max(1, Math.floor(losses.length / 3));
    assert.ok(mean(losses.slice(-third)) < 0.7 * mean(losses.slice(0, third)), "the loss went down");
    assert.ok(Math.max(...delays) < 1000, `the page answered within a second while training (max ${Math.max(...delays).toFixed(0)} ms)`);
    const chart = await canvasGray(page, "loss-chart");
    assert.ok(chart.some((v) => v > 0), "the loss chart is drawn");
    await page.screenshot({ path: `${ARTIFACTS}/training-paused.png`, fullPage: true });

    // Paused means paused.
    await page.waitForTimeout(3000);
    assert.equal(parseInt(await points(), 10), paused, "no steps while paused");
    assert.equal(await page.textContent("#train-run"), "Resume");
    await page.click("#train-run");
    await page.waitForFunction((p) => parseInt(document.getElementById("stat-step").textContent, 10) > p, paused, { timeout: 300_000 });
    await page.click("#train-pause");
    await page.waitForFunction(() => document.getElementById("train-status").textContent.startsWith("Paused"), null, { timeout: 300_000 });

    // Download the run, sample it, go back to the pretrained model, upload the file: the same
    // seed gives the same digits.
    const [download] = await Promise.all([page.waitForEvent("download"), page.click("#train-download")]);
    const file = `${ARTIFACTS}/${download.suggestedFilename()}`;
    await download.saveAs(file);
    assert.match(download.suggestedFilename(), /^consistency-8-16-16-step\d+\.safetensors$/);
    await sampleAgain(page);
    const trained = await canvasGray(page, "samples");
    await page.$eval("#sample-time", (el) => (el.dataset.ms = ""));
    await page.click("#train-pretrained");
    await page.waitForFunction(() => document.getElementById("train-status").textContent.startsWith("Loaded the pretrained"), null, { timeout: 300_000 });
    await waitForSample(page, "");
    const pretrained = await canvasGray(page, "samples");
    assert.notDeepEqual(pretrained, trained, "the pretrained model draws other digits");
    await page.$eval("#sample-time", (el) => (el.dataset.ms = ""));
    await page.setInputFiles("#train-upload", file);
    await page.waitForFunction(() => document.getElementById("train-status").textContent.startsWith("Loaded consistency-"), null, { timeout: 300_000 });
    await waitForSample(page, "");
    assert.deepEqual(await canvasGray(page, "samples"), trained, "the uploaded run draws the same digits");
    await page.screenshot({ path: `${ARTIFACTS}/uploaded.png`, fullPage: true });
    assert.deepEqual(errors, [], "console errors");
  } finally {
    await browser.close();
  }
});

test("a run survives a reload, and a run that blows up stops and keeps its last good weights", { timeout: 900_000 }, async () => {
  const { browser, page, errors } = await cpu();
  try {
    await page.selectOption('select[name="widths"]', "tiny");
    await page.fill('input[name="batch"]', "4");
    await page.fill('input[name="seed"]', "3");
    await page.click("#train-reset");
    await page.waitForFunction(() => document.getElementById("train-status").textContent.includes("fresh run"), null, { timeout: 120_000 });
    await sampleAgain(page);
    const fresh = await canvasGray(page, "samples");

    // The run is in IndexedDB: a reload restores it, with the same digits.
    await page.reload();
    await page.waitForFunction(() => document.body.dataset.ready === "true", null, { timeout: 300_000, polling: 500 });
    await openSettings(page);
    assert.match(await page.textContent("#train-status"), /^Restored your run/);
    assert.match(await page.textContent("#run-info"), /8\/16\/16 channels.*seed=3/);
    assert.deepEqual(await canvasGray(page, "samples"), fresh, "the restored run draws the same digits");

    // Learning rate 3e38: Adam moves every weight by about that much, so by the second step they
    // overflow to infinity and the loss is no longer finite. (On SwiftShader the loss of such
    // weights comes out finite; there the check of the weights at autosave catches it.)
    await page.fill('input[name="batch"]', "4");
    await page.fill('input[name="lr"]', "3e38");
    await page.click("#train-reset");
    await page.waitForFunction(() => document.getElementById("train-status").textContent.includes("fresh run"), null, { timeout: 120_000 });
    await page.click("#train-run");
    await page.waitForFunction(() => document.getElementById("train-status").dataset.state === "error", null, { timeout: 600_000, polling: 250 });
    const failure = await page.textContent("#train-status");
    console.log(`a diverging run: ${failure}`);
    assert.match(failure, /(the loss became|are not finite).*back at step 0/);
    await page.waitForFunction(() => !document.getElementById("train-run").disabled, null, { timeout: 120_000 });
    assert.match(await page.textContent("#stat-step"), /^0 \//);
    await page.screenshot({ path: `${ARTIFACTS}/diverged.png`, fullPage: true });
    assert.deepEqual(errors, [], "console errors");
  } finally {
    await browser.close();
  }
});

test("an inpainting edit keeps the unmasked pixels and redraws the masked ones", { timeout: 600_000 }, async () => {
  const { browser, page, errors } = await cpu();
  try {
    // Pick the first sampled digit, paint a band across its middle as the region to redo.
    const grid = await page.$("#samples");
    const box = await grid.boundingBox();
    await page.mouse.click(box.x + 20, box.y + 20);
    await page.waitForTimeout(200);
    const source = await page.$("#edit-source");
    const s = await source.boundingBox();
    await page.mouse.move(s.x + 10, s.y + s.height / 2);
    await page.mouse.down();
    await page.mouse.move(s.x + s.width - 10, s.y + s.height / 2, { steps: 12 });
    await page.mouse.up();
    await page.click("#edit-run");
    await page.waitForFunction(() => document.getElementById("edit-status").textContent.startsWith("Done"), null, { timeout: 300_000, polling: 250 });
    const given = (await page.getAttribute("#edit-source", "data-gray")).split(",").map(Number);
    const mask = (await page.getAttribute("#edit-source", "data-mask")).split(",").map(Number);
    const result = (await page.getAttribute("#edit-output", "data-gray")).split(",").map(Number);
    const masked = mask.filter((m) => m).length;
    assert.ok(masked > 40 && masked < 400, `${masked} pixels masked`);
    const kept = result.filter((v, i) => !mask[i] && v !== given[i]).length;
    assert.equal(kept, 0, "every unmasked pixel is the source's");
    const redrawn = result.filter((v, i) => mask[i] && v !== given[i]).length;
    assert.ok(redrawn > 0, "the masked region was redrawn");
    console.log(`inpainting: ${masked} pixels masked, ${redrawn} of them changed; ${await page.textContent("#edit-status")}`);
    await page.screenshot({ path: `${ARTIFACTS}/inpaint.png`, fullPage: true });

    // The other edits run and draw something.
    for (const kind of ["superres-7", "denoise", "sdedit", "interpolate"]) {
      await page.selectOption("#edit-kind", kind);
      await page.$eval("#edit-status", (el) => (el.textContent = ""));
      await page.click("#edit-run");
      await page.waitForFunction(() => /^(Done|The edit failed)/.test(document.getElementById("edit-status").textContent), null, { timeout: 300_000, polling: 250 });
      const status = await page.textContent("#edit-status");
      assert.match(status, /^Done/, `${kind}: ${status}`);
      const out = (await page.getAttribute("#edit-output", "data-gray")).split(",").map(Number);
      assert.ok(out.some((v) => v > 128), `${kind} draws strokes`);
      await page.screenshot({ path: `${ARTIFACTS}/edit-${kind}.png`, fullPage: true });
    }
    assert.deepEqual(errors, [], "console errors");
  } finally {
    await browser.close();
  }
});

test("the engine's self-check passes in the browser, and the benchmark reports numbers", { timeout: 900_000 }, async () => {
  const { browser, page, errors } = await webgpu();
  try {
    await page.click("#selftest-run");
    await page.waitForFunction(
      () => ["ready", "error"].includes(document.getElementById("selftest-status").dataset.state),
      null,
      { timeout: 540_000, polling: 500 },
    );
    const rows = await page.$$eval("#selftest-results tbody tr", (trs) => trs.map((tr) => tr.innerText.replace(/\t/g, "  ")));
    console.log(`self-check in Chromium:\n  ${rows.join("\n  ")}\n  ${await page.textContent("#selftest-status")}`);
    assert.equal(await page.getAttribute("#selftest-status", "data-state"), "ready", await page.textContent("#selftest-status"));
    assert.ok(rows.length >= 8, "every check reported");

    await page.fill('input[name="batch"]', "8");
    await page.selectOption("#bench-configs", "tiny");
    await page.click("#bench-run");
    await page.waitForFunction(() => document.getElementById("bench-results").dataset.done === "true", null, { timeout: 600_000, polling: 500 });
    const bench = await page.$$eval("#bench-results tbody tr", (trs) => trs.map((tr) => tr.innerText.replace(/\t/g, "  ")));
    console.log(`benchmark in Chromium (SwiftShader), network / batch / steps/s / images/s / 64 one-step samples:\n  ${bench.join("\n  ")}`);
    assert.equal(bench.length, 1);
    assert.match(bench[0], /^tiny\s+8\s+[\d.]+\s+[\d.e+]+\s+\d+ ms \(fastest \d+, \d runs\)$/);
    await page.screenshot({ path: `${ARTIFACTS}/engine.png`, fullPage: true });
    assert.deepEqual(errors, [], "console errors");
  } finally {
    await browser.close();
  }
});
