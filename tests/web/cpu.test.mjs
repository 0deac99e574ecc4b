// The page on a machine without a usable GPU, in headless Chromium: the CPU backend (the crate
// compiled to wasm32 with SIMD) in Web Workers. Without --enable-unsafe-webgpu Chromium offers no
// WebGPU adapter; with it, a SwiftShader fallback adapter, which the page must pass over.
//
// Run after `trunk build --public-url /consistency/` (scripts/test does both): node --test tests/web/

import { test } from "node:test";
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { ARTIFACTS, longestTask, openPage, openSettings, servedSite, watchLongTasks } from "./browser.mjs";

const site = servedSite();

const text = (page, selector) => page.textContent(selector);
const step = async (page) => parseInt(await text(page, "#stat-step"), 10);

// Starts a fresh run from the Train panel's settings and waits until it is ready.
async function freshRun(page, { widths, batch, lr, seed = 0, recipe = "improved" }) {
  await page.selectOption('select[name="widths"]', widths);
  await page.selectOption('select[name="recipe"]', recipe);
  await page.fill('input[name="batch"]', String(batch));
  if (lr) await page.fill('input[name="lr"]', String(lr));
  await page.fill('input[name="seed"]', String(seed));
  await page.click("#train-reset");
  await page.waitForFunction(() => document.getElementById("train-status").textContent.includes("fresh run"), null, { timeout: 120_000 });
}

// Trains until `steps` steps are done, then pauses; resolves to the loss chart's points.
async function trainTo(page, steps) {
  await page.click("#train-run");
  await page.waitForFunction((n) => parseInt(document.getElementById("stat-step").textContent, 10) >= n, steps, { timeout: 600_000, polling: 200 });
  await page.click("#train-pause");
  await page.waitForFunction(() => document.getElementById("train-status").textContent.startsWith("Paused"), null, { timeout: 300_000 });
  return JSON.parse(await page.getAttribute("#loss-chart", "data-points"));
}

test("without WebGPU the page says it runs on the CPU and why, samples, and trains the small network without freezing", { timeout: 900_000 }, async () => {
  const { browser, page, errors } = await openPage(site.origin, []);
  try {
    // The status line says it in one sentence; the reason, folded beneath it, says why.
    // Chromium runs WebAssembly relaxed SIMD: the workers load that build (relaxed/).
    assert.match(await text(page, "#status"), /^Running on the CPU: WebAssembly relaxed SIMD in \d workers?, because WebGPU is not available\.$/);
    const status = await text(page, "#status-reason");
    console.log(`status: ${status}`);
    assert.match(status, /^Running on the CPU: WebAssembly relaxed SIMD in \d workers?, because WebGPU is not available: .*WebGPU works in Chrome/s);
    assert.equal(await page.getAttribute("body", "data-engine"), "cpu");
    const classes = await page.getAttribute("#samples", "data-classes");
    assert.ok(new Set(classes).size >= 5, `the classifier reads a variety of digits: ${classes}`);
    console.log(`CPU: ${classes.length} one-step digits in ${await page.getAttribute("#sample-time", "data-ms")} ms`);

    // The small network at batch 16 (a few dozen steps in the time a test can take) with the
    // original recipe, whose l2 loss falls within those steps, and probes on the page's
    // thread: the longest task on it (a long-task observer: what a click would wait behind),
    // and a 50 ms timer with how late each tick runs (which also counts the time the OS gives
    // the thread to others, so on a loaded machine it reads high without any task to blame).
    await freshRun(page, { widths: "small", batch: 16, lr: 0.002, recipe: "original" });
    await watchLongTasks(page);
    await page.evaluate(() => {
      window.stalls = [];
      let expected = performance.now() + 50;
      const tick = () => {
        const now = performance.now();
        window.stalls.push(now - expected);
        expected = now + 50;
        if (!window.stopProbe) setTimeout(tick, 50);
      };
      setTimeout(tick, 50);
    });
    const chartBefore = await page.$eval("#loss-chart", (c) => c.toDataURL());
    const started = Date.now();
    const losses = await trainTo(page, 36);
    const seconds = (Date.now() - started) / 1000;
    const stalls = await page.evaluate(() => ((window.stopProbe = true), window.stalls));
    const worst = Math.max(...stalls);
    const longest = await longestTask(page);
    const reached = await step(page);
    console.log(
      `small, batch 16, CPU workers: ${reached} steps in ${seconds.toFixed(0)} s (page's rate ${await text(page, "#stat-rate")} steps/s); ` +
        `losses ${losses.map(([s, l]) => `${s}:${l.toPrecision(3)}`).join(" ")}; ` +
        `main thread: longest task ${longest.toFixed(0)} ms; latest timer tick ${worst.toFixed(0)} ms over ${stalls.length} ticks (page's own probe: ${await text(page, "#stat-lag")})`,
    );
    const mean = (xs) => xs.reduce((a, [, l]) => a + l, 0) / xs.length;
    const third = Math.max(1, Math.floor(losses.length / 3));
    assert.ok(mean(losses.slice(-third)) < 0.5 * mean(losses.slice(0, third)), "the loss went down");
    assert.notEqual(await page.$eval("#loss-chart", (c) => c.toDataURL()), chartBefore, "the loss chart moved");
    assert.ok(longest < 500, `no task held the page's thread for 500 ms (longest ${longest.toFixed(0)} ms)`);
    // The live readout read the paused run's samples: the share read as a digit, charted.
    const readings = JSON.parse(await page.getAttribute("#readout", "data-readings"));
    console.log(`live readout: ${JSON.stringify(readings)}; ${await text(page, "#readout")}`);
    assert.equal(readings.at(-1)?.[0], reached, "a reading at the step training paused at");
    const legible = Number(await page.getAttribute("#readout", "data-legible"));
    assert.ok(legible >= 0 && legible <= 1, `legible share ${legible}`);
    assert.match(await text(page, "#readout-legible"), /^\d+%$/);
    const green = await page.$eval("#readout-chart", (canvas) => {
      const { data } = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height);
      return Array.from({ length: data.length / 4 }, (_, i) => data[4 * i + 1] > 120 && data[4 * i] < 60).filter(Boolean).length;
    });
    assert.ok(green > 0, "the readout chart draws the reading");
    await page.screenshot({ path: `${ARTIFACTS}/cpu-training.png`, fullPage: true });
    assert.deepEqual(errors, [], "console errors");
  } finally {
    await browser.close();
  }
});

test("the wasm CPU backend reproduces the native CPU backend's training steps and samples", { timeout: 600_000 }, async () => {
  const fixture = Object.fromEntries(
    (await readFile("tests/fixtures/wasm-reference.txt", "utf8"))
      .split("\n")
      .filter((l) => l && !l.startsWith("#"))
      .map((l) => {
        const [name, ...values] = l.split(/\s+/);
        return [name, values.map(Number)];
      }),
  );
  const { browser, page, errors } = await openPage(site.origin, []);
  try {
    // The module the page loaded, driven directly (on the page's thread: this is a test).
    const got = await page.evaluate(async () => {
      const bytes = async (url) => new Uint8Array(await (await fetch(url)).arrayBuffer());
      const studio = await window.wasmBindings.Studio.open(true, await bytes("consistency-small.safetensors"));
      const sampleGray = Array.from(await studio.sample(8, 3, {}));
      studio.restart({ widths: "tiny", recipe: "improved", totalSteps: 100, batch: 8, lr: 0.001, seed: 5 });
      studio.set_training_data(await bytes("train-images-idx3-ubyte.gz"), await bytes("train-labels-idx1-ubyte.gz"));
      const loss = [await studio.train(1), await studio.train(1)];
      // The online weights from the checkpoint file (safetensors: a u64 header length, a JSON
      // header, then the tensors).
      const file = await studio.snapshot();
      const view = new DataView(file.buffer, file.byteOffset);
      const headerLength = Number(view.getBigUint64(0, true));
      const header = JSON.parse(new TextDecoder().decode(file.subarray(8, 8 + headerLength)));
      const tensor = (name) => {
        const [from, to] = header[name].data_offsets;
        return new Float32Array(file.slice(8 + headerLength + from, 8 + headerLength + to).buffer);
      };
      const names = Object.keys(header).filter((k) => k.startsWith("online.")).sort();
      const online = names.flatMap((name) => Array.from(tensor(name)));
      studio.free();
      return {
        loss,
        online_sum: [online.reduce((a, v) => a + v, 0)],
        online_sumsq: [online.reduce((a, v) => a + v * v, 0)],
        online_head: Array.from(tensor(names.find((name) => tensor(name).length >= 32)).subarray(0, 32)),
        sample_gray: sampleGray,
      };
    });
    const lr = 0.001;
    const worst = {};
    for (const [name, expected] of Object.entries(fixture)) {
      assert.equal(got[name].length, expected.length, `${name}: length`);
      const bound = (k) => (name === "online_head" ? 1e-5 + 2 * lr * 2 : name === "sample_gray" ? 1 : 1e-4 * Math.abs(k));
      worst[name] = 0;
      expected.forEach((k, i) => {
        const off = Math.abs(got[name][i] - k);
        worst[name] = Math.max(worst[name], off);
        assert.ok(off <= bound(k), `${name}[${i}]: native ${k}, wasm ${got[name][i]}`);
      });
    }
    console.log(`wasm against native CPU backend, largest differences: ${JSON.stringify(worst)}`);
    assert.deepEqual(errors, [], "console errors");
  } finally {
    await browser.close();
  }
});

test("one worker and two workers take the same training steps", { timeout: 600_000 }, async () => {
  const trajectory = async (workers) => {
    // One step per call (`chunk=1`): the chart's points are the steps' losses.
    const { browser, page, errors } = await openPage(`${site.origin}?workers=${workers}&chunk=1`, []);
    try {
      assert.match(await text(page, "#status"), new RegExp(`in ${workers} workers?`));
      await freshRun(page, { widths: "tiny", batch: 8, lr: 0.002, seed: 2 });
      const losses = await trainTo(page, 6);
      assert.deepEqual(errors, [], "console errors");
      return losses;
    } finally {
      await browser.close();
    }
  };
  const one = await trajectory(1);
  const two = await trajectory(2);
  console.log(`losses, 1 worker: ${one.map(([s, l]) => `${s}:${l.toPrecision(6)}`).join(" ")}`);
  console.log(`losses, 2 workers: ${two.map(([s, l]) => `${s}:${l.toPrecision(6)}`).join(" ")}`);
  const common = Math.min(one.length, two.length);
  assert.ok(common >= 3, "both trained");
  for (let i = 0; i < common; i++) {
    assert.equal(one[i][0], two[i][0], "the same steps");
    assert.ok(Math.abs(one[i][1] - two[i][1]) <= 1e-4 * one[i][1], `step ${one[i][0]}: ${one[i][1]} against ${two[i][1]}`);
  }
});

test("on a software WebGPU adapter the page picks the CPU by itself, and WebGPU can still be chosen", { timeout: 900_000 }, async () => {
  const { browser, page, errors } = await openPage(site.origin, ["--enable-unsafe-webgpu"]);
  try {
    const status = await text(page, "#status");
    console.log(`status: ${status}`);
    assert.match(status, /^Running on the CPU: .*software fallback/);
    assert.equal(await page.getAttribute("body", "data-engine"), "cpu");
    assert.equal(await page.inputValue("#engine-choice"), "auto");
    const cpuDigits = await page.getAttribute("#samples", "data-classes");

    // Choose WebGPU: the run moves over, the choice is remembered across a reload.
    await page.selectOption("#engine-choice", "gpu");
    await page.waitForFunction(() => document.body.dataset.engine === "gpu" && !document.getElementById("train-run").disabled, null, { timeout: 300_000, polling: 250 });
    assert.match(await text(page, "#status"), /^WebGPU, as you chose, on a software adapter/);
    await page.reload();
    await page.waitForFunction(() => document.body.dataset.ready === "true", null, { timeout: 300_000, polling: 500 });
    await openSettings(page);
    assert.equal(await page.getAttribute("body", "data-engine"), "gpu");
    assert.equal(await page.inputValue("#engine-choice"), "gpu");
    assert.equal(await page.getAttribute("#samples", "data-classes"), cpuDigits.slice(0, 16), "the same seed draws the same digits on both backends");

    // Training the tiny network on WebGPU (SwiftShader) still works.
    await freshRun(page, { widths: "tiny", batch: 4 });
    const losses = await trainTo(page, 2);
    assert.ok(losses.length >= 1 && losses.every(([, l]) => Number.isFinite(l)), JSON.stringify(losses));
    console.log(`tiny on WebGPU (SwiftShader), batch 4: ${await text(page, "#stat-rate")} steps/s`);

    // Back to automatic.
    await page.selectOption("#engine-choice", "auto");
    await page.waitForFunction(() => document.body.dataset.engine === "cpu" && !document.getElementById("train-run").disabled, null, { timeout: 300_000, polling: 250 });
    assert.match(await text(page, "#run-info"), /8\/16\/16 channels/, "the run moved back with its state");
    await page.screenshot({ path: `${ARTIFACTS}/engine-choice.png`, fullPage: true });
    assert.deepEqual(errors, [], "console errors");
  } finally {
    await browser.close();
  }
});

test("the distilled model draws a chosen digit, and its teacher's ODE and its one step are compared on the same noise", { timeout: 600_000 }, async () => {
  const { browser, page, errors } = await openPage(site.origin, []);
  try {
    // The shipped consistency model is unconditional: no digit to choose.
    assert.equal(await page.isDisabled("#sample-digit"), true);
    // It carries the diffusion teacher it was distilled from (chain/): the comparison is ready.
    assert.equal(await page.isDisabled("#compare-run"), false, "the shipped model's teacher to compare with");
    await page.click("#train-distilled");
    await page.waitForFunction(() => document.getElementById("train-status").textContent.includes("Loaded the distilled model"), null, { timeout: 120_000 });
    assert.match(await text(page, "#run-info"), /class-conditional, consistency distillation \(heun teacher steps, N=18, mu=0\.95, guidance 3\)/);

    // Digit 7: the classifier reads most of the 64 samples as 7s.
    await page.selectOption("#sample-digit", "7");
    await page.waitForFunction(() => document.getElementById("sample-time").textContent.startsWith("64 7s"), null, { timeout: 120_000 });
    const classes = await page.getAttribute("#samples", "data-classes");
    const sevens = [...classes].filter((c) => c === "7").length;
    console.log(`asked for 7: the classifier reads ${sevens} of ${classes.length} as 7 (${classes})`);
    assert.ok(sevens > classes.length / 2, classes);

    // The teacher (Heun, 6 steps: 11 evaluations, twice for guidance) against one step.
    await page.fill("#compare-steps", "6");
    await page.click("#compare-run");
    await page.waitForFunction(() => /faster|failed/.test(document.getElementById("compare-status").textContent), null, { timeout: 300_000 });
    const status = await text(page, "#compare-status");
    console.log(`${await text(page, "#compare-teacher-caption")} | ${await text(page, "#compare-student-caption")} | ${status}`);
    assert.match(status, /^Same noise \(seed 0, digit 7\) on the CPU: the consistency model was [\d.]+x faster/);
    assert.match(await text(page, "#compare-teacher-caption"), /^teacher: heun, 6 steps \(11 evaluations, each twice for guidance w = 3\), \d+ ms/);
    const [teacherMs, studentMs] = [await page.getAttribute("#compare-teacher", "data-ms"), await page.getAttribute("#compare-student", "data-ms")];
    assert.ok(Number(teacherMs) > Number(studentMs), `teacher ${teacherMs} ms, student ${studentMs} ms`);
    await page.screenshot({ path: `${ARTIFACTS}/distilled.png`, fullPage: true });
    assert.deepEqual(errors, [], "console errors");
  } finally {
    await browser.close();
  }
});
