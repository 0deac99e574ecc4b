// The engine on the CPU backend, off the page's thread (see engine.js). Messages:
// { id, method: "open", args: [jsUrl, wasmUrl, checkpointBytes] } loads the module and opens a
// CPU Studio; { id, method: "call", args: [name, args] } runs one Studio method. Each answer is
// { id, result } or { id, error }. Messages are handled one at a time, in order.

let studio = null;
let queue = Promise.resolve();

async function handle({ method, args }) {
  if (method === "open") {
    const [js, wasm, checkpoint] = args;
    const bindings = await import(js);
    await bindings.default({ module_or_path: wasm });
    studio = await bindings.Studio.open(true, checkpoint);
    return null;
  }
  if (!studio) throw new Error("the CPU engine is not open");
  const [name, callArgs] = args;
  return await studio[name](...callArgs);
}

self.onmessage = ({ data }) => {
  queue = queue.then(async () => {
    try {
      self.postMessage({ id: data.id, result: await handle(data) });
    } catch (error) {
      self.postMessage({ id: data.id, error: error instanceof Error ? error.message : String(error) });
    }
  });
};
