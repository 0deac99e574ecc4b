// The CPU workers' two builds: Chromium runs WebAssembly relaxed SIMD, so its workers load
// relaxed/ (the crate built with +relaxed-simd by scripts/build-relaxed-wasm); a browser that
// does not validate relaxed SIMD gets the page's own simd128 module, and both draw the same
// digits from the same noise. Headless Chromium without WebGPU (the CPU path).
//
// Run after `trunk build --public-url /consistency/` (scripts/test does both): node --test tests/web/

import { test } from "node:test";
import assert from "node:assert/strict";
import { openPage, servedSite } from "./browser.mjs";

const site = servedSite();
const text = (page, selector) => page.textContent(selector);

// Opens the page, takes note of the WebAssembly modules fetched (the workers' included), and
// answers the status line, those modules and what the classifier read in the first samples.
async function firstSamples(init) {
  const { browser, page, errors } = await openPage(site.origin, [], { init, ready: false });
  const modules = new Set();
  page.context().on("request", (request) => request.url().endsWith(".wasm") && modules.add(new URL(request.url()).pathname));
  try {
    await page.reload();
    await page.waitForFunction(() => document.body.dataset.ready === "true", null, { timeout: 300_000, polling: 500 });
    const seen = { status: await text(page, "#status"), modules: [...modules], classes: await page.getAttribute("#samples", "data-classes") };
    assert.deepEqual(errors, []);
    return seen;
  } finally {
    await browser.close();
  }
}

test("the workers run the relaxed-SIMD build where the browser has it, and the simd128 build where not, drawing the same digits", { timeout: 600_000 }, async () => {
  const relaxed = await firstSamples();
  // The same page in a browser that validates no relaxed-SIMD module.
  const plain = await firstSamples(() => {
    const validate = WebAssembly.validate;
    WebAssembly.validate = (bytes) => {
      const view = new Uint8Array(bytes.buffer ?? bytes);
      for (let i = 0; i + 2 < view.length; i++) if (view[i] === 0xfd && view[i + 1] === 0x85 && view[i + 2] === 0x02) return false;
      return validate(bytes);
    };
  });
  console.log(`relaxed: ${relaxed.status} ${relaxed.modules.join(" ")}\nplain: ${plain.status} ${plain.modules.join(" ")}`);
  assert.match(relaxed.status, /^Running on the CPU: WebAssembly relaxed SIMD in \d workers?/);
  assert.ok(relaxed.modules.some((m) => m.endsWith("/relaxed/consistency_bg.wasm")), "the workers loaded the relaxed build");
  assert.match(plain.status, /^Running on the CPU: WebAssembly SIMD in \d workers?/);
  assert.ok(!plain.modules.some((m) => m.includes("/relaxed/")), "no relaxed module where the browser has none");
  // Fused multiply-adds round once instead of twice: the digits differ by far less than what
  // changes the classifier's reading of more than a few of them.
  assert.equal(relaxed.classes.length, plain.classes.length);
  const differ = [...relaxed.classes].filter((c, i) => c !== plain.classes[i]).length;
  assert.ok(differ <= 3, `the two builds' digits read differently ${differ} times: ${relaxed.classes} / ${plain.classes}`);
});
