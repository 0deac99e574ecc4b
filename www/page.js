// What every panel shares: the engine and the numbers of the method once the module has
// loaded, the last status of the run, whether training runs, and small helpers for the page.

export const $ = (id) => document.getElementById(id);

export const SIDE = 28;
export const PIXELS = SIDE * SIDE;

// The shipped runs, served with the page.
export const PRETRAINED = "consistency-small.safetensors";
// Distilled from a diffusion teacher (Algorithm 2), class-conditional; the file carries the
// teacher, which the comparison panel samples.
export const DISTILLED = "distilled-tiny.safetensors";
// A diffusion teacher (the tiny network, class-conditional, trained 20,000 steps): what "From
// the teacher" distils when the run is not a teacher itself.
export const TEACHER = "teacher-tiny.safetensors";

// The one piece of state the panels share. `bindings`: the wasm module's exports;
// `constants`: its `constants()` (T, eps, sigmaData, timePoints); `engine`: the running
// engine (engine.js), null while it is being replaced; `status`: the run's last status;
// `training`: whether the training loop runs.
export const page = { bindings: null, constants: null, engine: null, status: null, training: false };

export function message(error) {
  return error instanceof Error ? error.message : String(error);
}

// A status line in one of the states the style sheet colours: loading, ready, warning, error.
export function show(el, state, text) {
  el.hidden = false;
  el.dataset.state = state;
  el.textContent = text;
}

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// A number field as an integer in [min, max] (a blank or junk field gives min).
export function intField(id, min, max) {
  return Math.max(min, Math.min(max, Math.round(Number($(id).value)) || min));
}

// Fetches a file with a progress bar; resolves to its bytes.
export async function fetchWithProgress(url, bar) {
  const response = await fetch(url);
  if (!response.ok) throw new Error(`${url}: HTTP ${response.status}`);
  const total = Number(response.headers.get("content-length")) || 0;
  const reader = response.body.getReader();
  const parts = [];
  let received = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    parts.push(value);
    received += value.byteLength;
    if (total) bar.value = received / total;
  }
  bar.value = 1;
  const bytes = new Uint8Array(received);
  let offset = 0;
  for (const part of parts) {
    bytes.set(part, offset);
    offset += part.byteLength;
  }
  return bytes;
}
