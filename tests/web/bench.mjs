// The page's speed in headless Chromium beside the engines a person would pick instead, in one
// run: the small network (16/32/32), a consistency-training step and one-step sampling of 64
// digits on each backend the page offers (the CPU backend in its workers; WebGPU, here Chrome's
// SwiftShader emulation), then the peers' harnesses in bench/: onnxruntime-web's wasm backend
// (1 and 2 threads) sampling with our network exported from the PyTorch twin, and
// TensorFlow.js's WebGL backend for one training step. Prints a table and the ratios, all
// measured in this run.
//
//   node tests/web/bench.mjs [dist] [bench folder] [WebGPU training batch]
//
// scripts/bench-page builds the release page, installs the peers (bench/install), exports the
// ONNX model and runs this. A peer that cannot run is reported and skipped.

import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { serve, openPage } from "./browser.mjs";

const [dist = "dist", peers = "bench", gpuBatch = "8"] = process.argv.slice(2);

// The page's own benchmark (Engine panel) for the small network at `batch`: seconds per
// training step, and one-step sampling of 64 digits back to back (median and fastest, ms).
async function ours(origin, args, batch) {
  const { browser, page } = await openPage(origin, args);
  try {
    const engine = await page.textContent("#status");
    await page.fill('input[name="batch"]', String(batch));
    await page.selectOption("#bench-configs", "small");
    await page.click("#bench-run");
    await page.waitForFunction(() => document.getElementById("bench-results").dataset.done === "true", null, { timeout: 3_600_000, polling: 1000 });
    const row = await page.$eval("#bench-results tbody tr", (tr) => ({ ...tr.dataset, text: tr.textContent }));
    if (!row.stepSeconds) throw new Error(`the page's benchmark failed: ${row.text}`);
    return { engine, stepSeconds: Number(row.stepSeconds), sampleMedian: Number(row.sampleMedianMs), sampleMin: Number(row.sampleMinMs) };
  } finally {
    await browser.close();
  }
}

// One JSON line from a peer's harness, or null (with the reason printed) if it cannot run.
function peer(script, args) {
  const path = join(peers, script);
  if (!existsSync(path)) {
    console.log(`  (skipped ${script}: not found under ${peers})`);
    return null;
  }
  const run = spawnSync("node", [path, ...args], { encoding: "utf8", timeout: 900_000 });
  const line = run.stdout.trim().split("\n").pop();
  try {
    const result = JSON.parse(line);
    if (result.error) throw new Error(result.error);
    return result;
  } catch (error) {
    console.log(`  (${script} ${args.join(" ")} failed: ${error.message}; ${run.stderr.trim().split("\n").pop() ?? ""})`);
    return null;
  }
}

const { origin, close } = await serve(dist, "/consistency/");
const rows = [];
try {
  console.log("our page, CPU backend (no WebGPU flag), small, training batch 64 …");
  const cpu = await ours(`${origin}?engine=cpu`, [], 64);
  console.log(`  ${cpu.engine}`);
  rows.push(["ours, CPU backend (wasm SIMD, workers)", 64, cpu.stepSeconds, cpu.sampleMedian, cpu.sampleMin]);

  console.log(`our page, WebGPU (--enable-unsafe-webgpu), small, training batch ${gpuBatch} …`);
  const gpu = await ours(`${origin}?engine=gpu`, ["--enable-unsafe-webgpu"], Number(gpuBatch));
  console.log(`  ${gpu.engine}`);
  const adapter = /software/.test(gpu.engine) ? "software adapter" : "hardware adapter";
  rows.push([`ours, WebGPU (${adapter})`, Number(gpuBatch), gpu.stepSeconds, gpu.sampleMedian, gpu.sampleMin]);
} finally {
  close();
}

console.log(`peers (${peers}) …`);
for (const threads of [1, 2]) {
  const r = peer("ort/run.mjs", ["--backend", "wasm", "--model", "small", "--threads", String(threads), "--runs", "10"]);
  if (r) rows.push([`onnxruntime-web ${r.ort_version} wasm, ${threads} thread${threads > 1 ? "s" : ""}`, null, null, r.median_ms, r.min_ms]);
}
const tf = peer("tfjs/run.mjs", ["--config", "small", "--batch", "64", "--backend", "webgl", "--warmup", "0", "--steps", "1", "--sample-runs", "0", "--data", "random"]);
if (tf) rows.push([`TensorFlow.js ${tf.tfjs_version} WebGL (one cold step)`, 64, tf.step_ms_median / 1000, null, null]);

const fmt = (v, digits) => (v === null || v === undefined ? "-" : v.toFixed(digits));
console.log("\nsmall network (175,761 parameters), headless Chromium, this machine, one run:");
console.log("engine                                              batch   s / CT step   64 one-step samples: median ms   min ms");
for (const [name, batch, step, med, min] of rows) {
  console.log(`${name.padEnd(52)}${String(batch ?? "-").padStart(5)}   ${fmt(step, 2).padStart(11)}   ${fmt(med, 0).padStart(30)}   ${fmt(min, 0).padStart(6)}`);
}
const [ourCpu] = rows;
console.log("\nratios (above 1: ours faster; training compared per image when the batches differ):");
for (const [name, batch, step, med] of rows.slice(1)) {
  const parts = [];
  if (med) parts.push(`sampling ${(med / ourCpu[3]).toFixed(2)}x`);
  if (step) parts.push(`training ${(step / batch / (ourCpu[2] / ourCpu[1])).toFixed(1)}x`);
  console.log(`  ours (CPU backend) against ${name}: ${parts.join(", ")}`);
}
