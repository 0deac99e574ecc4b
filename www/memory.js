// The memory the page holds, in the Engine panel (and in data attributes, for the soak): the
// page's JavaScript heap (Chromium reports it), its WebAssembly memory, and each CPU worker's
// WebAssembly memory, which holds the worker's copy of the run and of MNIST. WebAssembly memory
// grows to its high-water mark and never shrinks, so a leak shows as growth from reading to
// reading.

import { $, page } from "./page.js";

const MB = 1024 * 1024;

// Reads the memory now and shows it; resolves to { heap, wasm, workers } in bytes.
export async function showMemory() {
  const workers = page.engine ? await page.engine.workerMemory() : [];
  const memory = {
    heap: performance.memory?.usedJSHeapSize ?? null,
    wasm: page.bindings.memoryBytes(),
    workers,
  };
  const out = $("engine-memory");
  out.dataset.memory = JSON.stringify(memory);
  const mb = (bytes) => `${(bytes / MB).toFixed(0)} MB`;
  const heap = memory.heap === null ? "" : `${mb(memory.heap)} of JavaScript and `;
  const inWorkers = workers.length ? `; ${workers.length === 1 ? "its worker" : "its workers"} ${workers.map(mb).join(", ")} of WebAssembly` : "";
  out.textContent = `Memory: the page holds ${heap}${mb(memory.wasm)} of WebAssembly${inWorkers}.`;
  return memory;
}
