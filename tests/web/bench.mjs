// The page's benchmark in headless Chromium, as a command: training steps/s and one-step
// sampling latency per network on the browser's WebGPU, then one-step sampling on the CPU
// backend (wasm, in the page's worker) with WebGPU turned off.
//
//   node tests/web/bench.mjs [dist] [networks: tiny | tiny,small | tiny,small,base] [batch]
//
// scripts/bench-page builds the release page and runs this.

import { serve, openPage } from "./browser.mjs";

const [dist = "dist", networks = "tiny,small", batch = "8"] = process.argv.slice(2);
const BASE = "/consistency/";
const { origin, close } = await serve(dist, BASE);
try {
  {
    const { browser, page } = await openPage(origin, ["--enable-unsafe-webgpu"]);
    console.log(`WebGPU adapter: ${await page.textContent("#adapter-name")} (${await page.textContent("#adapter-device-type")})`);
    await page.fill('input[name="batch"]', batch);
    await page.selectOption("#bench-configs", networks);
    await page.click("#bench-run");
    await page.waitForFunction(() => document.getElementById("bench-results").dataset.done === "true", null, { timeout: 3_600_000, polling: 1000 });
    const rows = await page.$$eval("#bench-results tbody tr", (trs) => trs.map((tr) => tr.innerText.replace(/\t/g, "  ")));
    console.log("network  batch  train steps/s  images/s  64 one-step samples");
    for (const row of rows) console.log(`  ${row}`);
    await browser.close();
  }
  {
    const { browser, page } = await openPage(origin, []);
    const times = [];
    for (let i = 0; i < 3; i++) {
      await page.$eval("#sample-time", (el) => (el.dataset.ms = ""));
      await page.click("#sample-run");
      await page.waitForFunction(() => document.getElementById("sample-time").dataset.ms && !document.getElementById("sample-run").disabled, null, { timeout: 600_000 });
      times.push(Number(await page.getAttribute("#sample-time", "data-ms")));
    }
    console.log(`CPU backend (wasm, worker), small network, 64 one-step samples: ${times.map((t) => `${t.toFixed(0)} ms`).join(", ")}`);
    await browser.close();
  }
} finally {
  close();
}
