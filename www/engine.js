// One way to call the engine wherever it runs. On WebGPU the Studio lives on the page's thread:
// its calls return Promises and the GPU does the work, so the page stays responsive. On the CPU
// backend the arithmetic itself would block the page, so Studios run in Web Workers
// (cpu-worker.js), one per core up to MAX_WORKERS, each holding the whole run; training steps
// and sampling batches are split across them (data parallelism). Either way
// `call(method, ...args)` runs one Studio method at a time, in order.

import { PIXELS } from "./page.js";
import { relaxedSimd } from "./relaxed-simd.js";

export class LocalEngine {
  constructor(studio) {
    this.studio = studio;
    this.kind = "gpu";
    this.queue = Promise.resolve();
  }

  call(method, ...args) {
    const run = this.queue.then(() => this.studio[method](...args));
    this.queue = run.catch(() => {});
    return run;
  }

  close() {
    this.studio.free();
  }

  // The bytes of each worker's WebAssembly memory: none, the run lives on the page's thread.
  async workerMemory() {
    return [];
  }
}

// More workers than this gain little on a small batch and cost a copy of the run and of MNIST
// each (tens of MB).
const MAX_WORKERS = 4;

// The workers a CPU engine starts by default: one per logical core, at most MAX_WORKERS.
export function defaultWorkers() {
  return Math.max(1, Math.min(MAX_WORKERS, navigator.hardwareConcurrency || 1));
}

// The URLs of the module the CPU workers load: the relaxed-SIMD build where the browser runs it
// (relaxed-simd.js), else the module Trunk built for the page (it preloads `<name>_bg.wasm`, and
// wasm-bindgen's loader beside it is `<name>.js`).
function builtModule() {
  if (relaxedSimd) {
    const at = (name) => new URL(`relaxed/${name}`, document.baseURI).href;
    return { js: at("consistency.js"), wasm: at("consistency_bg.wasm") };
  }
  const wasm = document.querySelector('link[rel="preload"][href$="_bg.wasm"]')?.href;
  if (!wasm) throw new Error("cannot find the WebAssembly module's URL in the page");
  return { js: wasm.replace(/_bg\.wasm$/, ".js"), wasm };
}

// One worker and its pending requests.
class Worker1 {
  constructor() {
    this.worker = new Worker(new URL("cpu-worker.js", document.baseURI), { type: "module" });
    this.next = 0;
    this.pending = new Map();
    this.worker.onmessage = ({ data }) => {
      const waiting = this.pending.get(data.id);
      this.pending.delete(data.id);
      if (data.error !== undefined) waiting?.reject(new Error(data.error));
      else waiting?.resolve(data.result);
    };
    this.worker.onerror = (event) => {
      const error = new Error(`a CPU worker failed: ${event.message}`);
      for (const waiting of this.pending.values()) waiting.reject(error);
      this.pending.clear();
    };
  }

  // `keep` false: the worker answers null instead of the result (a broadcast whose result one
  // worker is enough to give). `transfer`: buffers handed over rather than copied.
  request(method, args, { keep = true, transfer = [] } = {}) {
    return new Promise((resolve, reject) => {
      const id = this.next++;
      this.pending.set(id, { resolve, reject });
      this.worker.postMessage({ id, method, args, keep }, transfer);
    });
  }

  call(method, args, options) {
    return this.request("call", [method, args], options);
  }
}

// `count` items split into `parts` contiguous ranges as even as can be, none empty.
function split(count, parts) {
  const n = Math.max(1, Math.min(parts, count));
  return Array.from({ length: n }, (_, i) => [Math.floor((i * count) / n), Math.floor(((i + 1) * count) / n)]);
}

// Calls that change the run: every worker makes them, so all hold the same state.
const BROADCAST = new Set(["load", "restart", "set_training_data", "snapshot"]);

export class CpuEngine {
  // Starts `size` workers and opens a CPU Studio in each with the run in `checkpoint`.
  static async open(checkpoint, size = defaultWorkers()) {
    const engine = new CpuEngine(Array.from({ length: size }, () => new Worker1()));
    const { js, wasm } = builtModule();
    await Promise.all(engine.workers.map((w) => w.request("open", [js, wasm, checkpoint])));
    return engine;
  }

  constructor(workers) {
    this.kind = "cpu";
    this.workers = workers;
    this.queue = Promise.resolve();
  }

  call(method, ...args) {
    const run = this.queue.then(() => this.dispatch(method, args));
    this.queue = run.catch(() => {});
    return run;
  }

  close() {
    for (const w of this.workers) w.worker.terminate();
  }

  // The bytes of each worker's WebAssembly memory (answered between calls, in order).
  workerMemory() {
    return Promise.all(this.workers.map((w) => w.request("memory", [])));
  }

  async dispatch(method, args) {
    const [first, ...rest] = this.workers;
    if (method === "train") return this.train(args[0]);
    if (method === "sample") return this.sample(...args);
    if (BROADCAST.has(method)) {
      const [result] = await Promise.all([first.call(method, args), ...rest.map((w) => w.call(method, args, { keep: false }))]);
      return result;
    }
    return first.call(method, args);
  }

  // Digits of one seeded batch, each worker drawing a slice of it (the slices are exactly the
  // rows of the whole batch: `Studio.sample_rows`).
  async sample(count, seed, options) {
    const slices = split(count, this.workers.length);
    const parts = await Promise.all(slices.map(([a, b], i) => this.workers[i].call("sample_rows", [a, b, seed, options])));
    const out = new Uint8Array(count * PIXELS);
    parts.forEach((part, i) => out.set(part, slices[i][0] * PIXELS));
    return out;
  }

  // `steps` data-parallel steps: each worker computes the gradient of its slice of the batch,
  // the page adds the slices in worker order (a few hundred thousand additions, well under a
  // millisecond), and every worker takes the same Adam step with the sum. Resolves to the mean
  // loss, like `Studio.train`. One worker trains on its own, in one call.
  async train(steps) {
    if (this.workers.length === 1) return this.workers[0].call("train", [steps]);
    const { batch } = await this.workers[0].call("status", []);
    const slices = split(batch, this.workers.length);
    const active = this.workers.slice(0, slices.length);
    let total = 0;
    for (let step = 0; step < steps; step++) {
      const parts = await Promise.all(slices.map(([a, b], i) => active[i].call("gradients", [a, b])));
      const gradient = parts[0].gradient;
      let loss = parts[0].loss;
      for (const part of parts.slice(1)) {
        loss += part.loss;
        const g = part.gradient;
        for (let j = 0; j < g.length; j++) gradient[j] += g[j];
      }
      // Idle workers (a batch smaller than the pool) take the step too, to stay in step.
      await Promise.all(this.workers.map((w) => w.call("apply_gradients", [gradient, loss])));
      total += loss;
    }
    return total / steps;
  }
}
