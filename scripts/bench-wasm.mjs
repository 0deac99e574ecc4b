// Times the wasm CPU backend built with relaxed SIMD, with SIMD128 and without SIMD (see
// scripts/bench-wasm), one thread each, alternating builds run by run so that the machine's load
// hits them alike. Node 20 runs relaxed SIMD behind --experimental-wasm-relaxed-simd.
//
//   node --experimental-wasm-relaxed-simd scripts/bench-wasm.mjs <relaxed dir> <simd dir> <scalar dir>

import { createRequire } from "node:module";
import { readFileSync } from "node:fs";
import { resolve } from "node:path";

const require = createRequire(import.meta.url);
const [relaxedDir, simdDir, scalarDir] = process.argv.slice(2);
const ROUNDS = 3;
const median = (xs) => [...xs].sort((a, b) => a - b)[xs.length >> 1];
const pretrained = new Uint8Array(readFileSync("assets/consistency-small.safetensors"));
const images = readFileSync("data/mnist/train-images-idx3-ubyte.gz");
const labels = readFileSync("data/mnist/train-labels-idx1-ubyte.gz");

async function open(dir) {
  const { Studio } = require(resolve(dir, "consistency.js"));
  const studio = await Studio.open(true, pretrained);
  studio.set_training_data(images, labels);
  await studio.sample(64, 0, []); // warm-up
  studio.restart({ widths: "small", recipe: "improved", totalSteps: 1000, batch: 64, lr: 2e-4, seed: 0 });
  await studio.train(1); // warm-up
  studio.load(pretrained);
  return studio;
}

const timed = async (call) => {
  const started = performance.now();
  await call();
  return performance.now() - started;
};

const builds = { relaxed: await open(relaxedDir), simd: await open(simdDir), scalar: await open(scalarDir) };
const times = Object.fromEntries(Object.keys(builds).map((name) => [name, { sample: [], step: [] }]));
for (let round = 0; round < ROUNDS; round++) {
  for (const [name, studio] of Object.entries(builds)) {
    times[name].sample.push(await timed(() => studio.sample(64, round + 1, [])));
    studio.restart({ widths: "small", recipe: "improved", totalSteps: 1000, batch: 64, lr: 2e-4, seed: round });
    times[name].step.push(await timed(() => studio.train(1)));
    studio.load(pretrained);
  }
}
console.log(`wasm CPU backend in Node ${process.version}, one thread, median of ${ROUNDS}:`);
for (const [name, t] of Object.entries(times)) {
  console.log(`  ${name.padEnd(7)} 64 one-step small samples ${median(t.sample).toFixed(0).padStart(6)} ms   small CT step at batch 64 ${median(t.step).toFixed(0).padStart(6)} ms`);
}
const ratio = (slow, fast, k) => (median(times[slow][k]) / median(times[fast][k])).toFixed(2);
console.log(`  SIMD128 against no SIMD: sampling ${ratio("scalar", "simd", "sample")}x, training step ${ratio("scalar", "simd", "step")}x`);
console.log(`  relaxed SIMD against SIMD128: sampling ${ratio("simd", "relaxed", "sample")}x, training step ${ratio("simd", "relaxed", "step")}x`);
