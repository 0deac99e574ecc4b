// The page's views of the consistency property and its shareable address, in headless Chromium
// on the CPU engine: every setting read from and written to the URL; the noise strip of a
// training digit mapped back by the trained model (and not by an untrained one); multistep
// sampling step by step; the schedule chart; the new recipes and the perceptual loss; a
// teacher trained in the page and "From the teacher"; the paper's figures.
//
// Run after `trunk build --public-url /consistency/` (scripts/test does both): node --test tests/web/

import { test } from "node:test";
import assert from "node:assert/strict";
import { ARTIFACTS, openPage, openSettings, servedSite } from "./browser.mjs";

const site = servedSite();

const value = (page, selector) => page.$eval(selector, (el) => (el.type === "checkbox" ? el.checked : el.value));

async function showStrip(page) {
  await page.$eval("#strip", (c) => delete c.dataset.distance);
  await page.click("#strip-run");
  await page.waitForFunction(() => document.getElementById("strip").dataset.distance !== undefined, null, { timeout: 300_000 });
  const data = await page.$eval("#strip", (c) => ({ ...c.dataset }));
  return { times: data.times.split(",").map(Number), classes: data.classes, distance: Number(data.distance) };
}

test("settings live in the address, the strip shows the consistency property, multistep steps through, the new recipes train, a teacher trains and a one-step model is distilled from it in a click", { timeout: 900_000 }, async () => {
  const query = "config=small&recipe=original&loss=perceptual&K=500&batch=16&seed=7&steps=2&count=16&sampleSeed=5&stripDigit=3&traceSteps=4";
  const { browser, page, errors } = await openPage(`${site.origin}?${query}`, []);
  try {
    // The address's settings are the page's.
    assert.equal(await value(page, 'select[name="widths"]'), "small");
    assert.equal(await value(page, 'select[name="recipe"]'), "original");
    assert.equal(await value(page, 'select[name="loss"]'), "perceptual");
    assert.equal(await value(page, 'input[name="totalSteps"]'), "500");
    assert.equal(await value(page, 'input[name="batch"]'), "16");
    assert.equal(await value(page, 'input[name="seed"]'), "7");
    assert.equal(await value(page, "#sample-steps"), "2");
    assert.equal(await value(page, "#strip-digit"), "3");
    assert.equal(await value(page, "#trace-steps"), "4");
    const sampled = await page.textContent("#sample-time");
    assert.match(sampled, /^16 digits in 2 network evaluations each: .* seed 5\./, sampled);

    // A change goes into the address and survives a reload; a default value leaves it.
    await page.fill('input[name="seed"]', "9");
    await page.dispatchEvent('input[name="seed"]', "change");
    await page.selectOption("#sample-steps", "1");
    let search = new URLSearchParams(await page.evaluate(() => location.search));
    assert.equal(search.get("seed"), "9");
    assert.equal(search.has("steps"), false, "1 step is the default: not in the address");
    await page.reload();
    await page.waitForFunction(() => document.body.dataset.ready === "true", null, { timeout: 300_000, polling: 500 });
    await openSettings(page);
    assert.equal(await value(page, 'input[name="seed"]'), "9");
    assert.equal(await value(page, 'select[name="loss"]'), "perceptual");

    // The shipped model maps training digit 3's strip back to one digit.
    const trained = await showStrip(page);
    console.log(`trained strip: t = ${trained.times.join(", ")}; classes ${trained.classes}; distance ${trained.distance}`);
    assert.equal(trained.times.length, 12);
    const low = trained.times.filter((t) => t <= 10).length;
    const classes = trained.classes.slice(0, low);
    const agree = [...classes].filter((c) => c === classes[0]).length;
    assert.ok(agree >= low - 1, `one digit up to t = 10: ${classes}`);
    assert.ok(trained.distance < 0.1, `f(x_t, t) stays near the digit: ${trained.distance}`);

    // Multistep sampling, frame by frame: noise, f, then re-noise and f per time point.
    await page.click("#trace-run");
    await page.waitForFunction(() => document.getElementById("trace").dataset.captions !== undefined, null, { timeout: 300_000 });
    const captions = (await page.getAttribute("#trace", "data-captions")).split("|");
    assert.deepEqual(captions, [
      "noise, t = 80", "f(x, 80)", "re-noised to t = 8", "f(x, 8)",
      "re-noised to t = 2", "f(x, 2)", "re-noised to t = 0.5", "f(x, 0.5)",
    ]);
    assert.equal(await page.$$eval("#trace canvas", (c) => c.length), 8);

    // The schedule chart shows the run's grid: N(k) points at its step.
    const grid = await page.getAttribute("#schedule", "data-grid");
    assert.equal(grid, (await page.textContent("#stat-n")).trim(), "the grid has N(k) points");

    // An untrained network does not map the strip back: f is the noisy input shrunk to 0.
    await page.selectOption('select[name="widths"]', "tiny");
    await page.selectOption('select[name="recipe"]', "improved");
    await page.selectOption('select[name="loss"]', "");
    await page.click("#train-reset");
    await page.waitForFunction(() => document.getElementById("train-status").textContent.includes("fresh run"), null, { timeout: 120_000 });
    const untrained = await showStrip(page);
    console.log(`untrained strip: classes ${untrained.classes}; distance ${untrained.distance}`);
    assert.ok(untrained.distance > 3 * trained.distance, `untrained ${untrained.distance} vs trained ${trained.distance}`);
    assert.equal(await page.getAttribute("#schedule", "data-step"), "0");

    // The perceptual loss trains in the page.
    await page.selectOption('select[name="loss"]', "perceptual");
    await page.fill('input[name="batch"]', "4");
    await page.click("#train-reset");
    await page.waitForFunction(() => document.getElementById("run-info").textContent.includes("loss=perceptual"), null, { timeout: 120_000 });
    await page.click("#train-run");
    await page.waitForFunction(() => parseInt(document.getElementById("stat-step").textContent, 10) >= 2, null, { timeout: 300_000, polling: 200 });
    await page.click("#train-pause");
    await page.waitForFunction(() => document.getElementById("train-status").textContent.startsWith("Paused"), null, { timeout: 300_000 });
    const loss = Number(await page.textContent("#stat-loss"));
    assert.ok(Number.isFinite(loss) && loss > 0, `perceptual loss ${loss}`);

    // Consistency tuning and progressive distillation start from the distilled model's teacher.
    await page.click("#train-distilled");
    await page.waitForFunction(() => document.getElementById("train-status").textContent.includes("Loaded the distilled model"), null, { timeout: 300_000 });
    for (const [recipe, described] of [["tuning", "consistency tuning"], ["progressive", "progressive distillation"]]) {
      await page.selectOption('select[name="recipe"]', recipe);
      await page.selectOption('select[name="loss"]', "");
      await page.click("#train-reset");
      await page.waitForFunction((d) => document.getElementById("run-info").textContent.includes(d), described, { timeout: 120_000 });
      await page.click("#train-run");
      await page.waitForFunction(() => parseInt(document.getElementById("stat-step").textContent, 10) >= 1, null, { timeout: 300_000, polling: 200 });
      await page.click("#train-pause");
      await page.waitForFunction(() => document.getElementById("train-status").textContent.startsWith("Paused"), null, { timeout: 300_000 });
      console.log(`${recipe}: ${await page.textContent("#run-info")} loss ${await page.textContent("#stat-loss")}`);
      await page.click("#train-distilled");
      await page.waitForFunction(() => document.getElementById("train-status").textContent.includes("Loaded the distilled model"), null, { timeout: 300_000 });
    }

    // The paper's whole path in the page: a diffusion teacher trains (its previews drawn by its
    // ODE), then one click distils a one-step model from it, the run being its own teacher.
    await page.selectOption('select[name="widths"]', "tiny");
    await page.selectOption('select[name="recipe"]', "teacher");
    await page.selectOption('select[name="loss"]', "");
    await page.fill('input[name="batch"]', "4");
    await page.click("#train-reset");
    await page.waitForFunction(() => document.getElementById("run-info").textContent.includes("EDM teacher"), null, { timeout: 120_000 });
    await page.click("#train-run");
    await page.waitForFunction(() => parseInt(document.getElementById("stat-step").textContent, 10) >= 2, null, { timeout: 300_000, polling: 200 });
    await page.click("#train-pause");
    await page.waitForFunction(() => document.getElementById("train-status").textContent.startsWith("Paused"), null, { timeout: 300_000 });
    const teacherLoss = Number(await page.textContent("#stat-loss"));
    assert.ok(Number.isFinite(teacherLoss) && teacherLoss > 0, `teacher loss ${teacherLoss}`);
    await page.click("#train-from-teacher");
    await page.waitForFunction(() => document.getElementById("run-info").textContent.includes("consistency distillation"), null, { timeout: 120_000 });
    await page.waitForFunction(() => document.getElementById("train-status").textContent.startsWith("Training"), null, { timeout: 120_000 });
    await page.click("#train-pause");
    await page.waitForFunction(() => document.getElementById("train-status").textContent.startsWith("Paused"), null, { timeout: 300_000 });
    const tuned = await page.textContent("#run-info");
    console.log(`from the page's teacher: ${tuned} loss ${await page.textContent("#stat-loss")}`);
    assert.match(tuned, /8\/16\/16 channels/, "the teacher's widths");
    assert.doesNotMatch(tuned, /class-conditional/, "the page's teacher, not the shipped one");
    // From a run that is not a teacher, the click loads the shipped tiny teacher first.
    await page.click("#train-pretrained");
    await page.waitForFunction(() => document.getElementById("train-status").textContent.includes("Loaded the pretrained model"), null, { timeout: 300_000 });
    await page.click("#train-from-teacher");
    await page.waitForFunction(() => /class-conditional, consistency distillation/.test(document.getElementById("run-info").textContent), null, { timeout: 300_000 });
    await page.waitForFunction(() => document.getElementById("train-status").textContent.startsWith("Training"), null, { timeout: 120_000 });
    await page.click("#train-pause");
    await page.waitForFunction(() => document.getElementById("train-status").textContent.startsWith("Paused"), null, { timeout: 300_000 });
    console.log(`from the shipped teacher: ${await page.textContent("#run-info")}`);

    // The paper's figures load.
    const figures = await page.$$eval(".figures:not(.samples) img", async (imgs) => {
      await Promise.all(imgs.map((img) => (img.loading = "eager", img.decode().catch(() => null))));
      return imgs.map((img) => [img.getAttribute("src"), img.naturalWidth]);
    });
    console.log(`figures: ${JSON.stringify(figures)}`);
    for (const [src, width] of figures) assert.equal(width, 800, `${src} loads as an 800-pixel chart`);
    await page.screenshot({ path: `${ARTIFACTS}/views.png`, fullPage: true });
    assert.deepEqual(errors, []);
  } finally {
    await browser.close();
  }
});
