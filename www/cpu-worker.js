// One CPU worker of the engine (see engine.js). Messages:
// { id, method: "open", args: [jsUrl, wasmUrl, checkpointBytes] } loads the module and opens a
// CPU Studio; { id, method: "call", args: [name, args], keep } runs one Studio method;
// { id, method: "memory" } answers the bytes of this worker's WebAssembly memory. Each
// answer is { id, result } (null when `keep` is false) or { id, error }; results that hold
// buffers (digits, gradients) hand them over rather than copy them. Messages are handled one at
// a time, in order.

let bindings = null;
let studio = null;
let queue = Promise.resolve();

async function handle({ method, args }) {
  if (method === "open") {
    const [js, wasm, checkpoint] = args;
    bindings = await import(js);
    await bindings.default({ module_or_path: wasm });
    studio = await bindings.Studio.open(true, checkpoint);
    return null;
  }
  if (!studio) throw new Error("the CPU engine is not open");
  if (method === "memory") return bindings.memoryBytes();
  const [name, callArgs] = args;
  return await studio[name](...callArgs);
}

// The buffers of a result, to transfer with it.
function buffers(result) {
  if (ArrayBuffer.isView(result)) return [result.buffer];
  if (result && ArrayBuffer.isView(result.gradient)) return [result.gradient.buffer];
  return [];
}

self.onmessage = ({ data }) => {
  queue = queue.then(async () => {
    try {
      const result = await handle(data);
      const kept = data.keep === false ? null : result;
      self.postMessage({ id: data.id, result: kept ?? null }, buffers(kept));
    } catch (error) {
      self.postMessage({ id: data.id, error: error instanceof Error ? error.message : String(error) });
    }
  });
};
