// One way to call the engine wherever it runs. On WebGPU the Studio lives on the page's thread:
// its calls return Promises and the GPU does the work, so the page stays responsive. On the CPU
// backend (no WebGPU) the same Studio runs in a worker (cpu-worker.js), because there the
// arithmetic itself would block the page. Either way `call(method, ...args)` runs one Studio
// method at a time, in order.

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
}

// The URLs of the module Trunk built: the page preloads `<name>_bg.wasm`, and wasm-bindgen's
// loader beside it is `<name>.js`.
function builtModule() {
  const wasm = document.querySelector('link[rel="preload"][href$="_bg.wasm"]')?.href;
  if (!wasm) throw new Error("cannot find the WebAssembly module's URL in the page");
  return { js: wasm.replace(/_bg\.wasm$/, ".js"), wasm };
}

export class WorkerEngine {
  // Starts the worker and opens a CPU Studio in it with the run in `checkpoint`.
  static async open(checkpoint) {
    const worker = new Worker(new URL("cpu-worker.js", document.baseURI), { type: "module" });
    const engine = new WorkerEngine(worker);
    const { js, wasm } = builtModule();
    await engine.request("open", [js, wasm, checkpoint]);
    return engine;
  }

  constructor(worker) {
    this.kind = "cpu";
    this.worker = worker;
    this.next = 0;
    this.pending = new Map();
    worker.onmessage = ({ data }) => {
      const waiting = this.pending.get(data.id);
      this.pending.delete(data.id);
      if (data.error !== undefined) waiting?.reject(new Error(data.error));
      else waiting?.resolve(data.result);
    };
    worker.onerror = (event) => {
      const error = new Error(`the CPU worker failed: ${event.message}`);
      for (const waiting of this.pending.values()) waiting.reject(error);
      this.pending.clear();
    };
  }

  request(method, args) {
    return new Promise((resolve, reject) => {
      const id = this.next++;
      this.pending.set(id, { resolve, reject });
      this.worker.postMessage({ id, method, args });
    });
  }

  call(method, ...args) {
    return this.request("call", [method, args]);
  }
}
