// The engine panel's backend: which one a visitor gets (WebGPU on a hardware adapter, else the
// CPU backend in workers), why, the adapter, and moving the run to the other one on request.

import { $, message, page, show } from "./page.js";
import { CpuEngine, LocalEngine, defaultWorkers } from "./engine.js";
import { cpuInstructions } from "./relaxed-simd.js";
import { saveEngineChoice, savedEngineChoice } from "./store.js";
import { askedEngine, askedWorkers } from "./url.js";
import { forgetMnist } from "./mnist.js";
import { refreshStatus } from "./status.js";
import { sample } from "./sample.js";
import { showMemory } from "./memory.js";
import { trainButtons } from "./train.js";

const CHOICES = ["auto", "gpu", "cpu"];

// What the person asked for: `?engine=` in the address, else their last choice, else automatic.
export function engineChoice() {
  const saved = savedEngineChoice();
  return askedEngine(CHOICES) ?? (CHOICES.includes(saved) ? saved : "auto");
}

function describeAdapter(info) {
  const fill = (id, value) => ($(id).textContent = value || "—");
  fill("adapter-name", info.name);
  fill("adapter-backend", info.backend);
  fill("adapter-device-type", info.device_type);
  fill("adapter-driver", info.driver);
  $("adapter").hidden = false;
}

// Opens the engine `choice` asks for with the run in `checkpoint`. Automatic takes WebGPU on a
// hardware adapter and the CPU otherwise. Resolves to { engine, state, reason, headline }: the
// reason is what the page shows in the Engine panel and under "Why this backend", the headline
// its first sentence, for the status line. The GPU device opened only to look at the adapter is
// released.
export async function openEngine(choice, checkpoint) {
  let studio = null;
  let gpuError = null;
  let info = null;
  if (choice !== "cpu") {
    try {
      studio = await page.bindings.Studio.open(false, checkpoint);
      info = studio.adapter();
      describeAdapter(info);
    } catch (error) {
      gpuError = message(error);
    }
  }
  $("selftest-run").disabled = studio === null;
  const named = info?.name ? ` (${info.name})` : "";
  if (studio && (choice === "gpu" || !info.is_fallback)) {
    $("sample-count").value = info.is_fallback ? "16" : $("sample-count").value;
    const reason = info.is_fallback
      ? `WebGPU, as you chose, on a software adapter${named}: correct, but far slower than the CPU backend here. Use the tiny network to train.`
      : `WebGPU on a hardware adapter${named}.`;
    const headline = info.is_fallback ? `WebGPU, as you chose, on a software adapter${named}: slow here.` : reason;
    return { engine: new LocalEngine(studio), state: info.is_fallback ? "warning" : "ready", reason, headline };
  }
  studio?.free();
  const workers = askedWorkers() ?? defaultWorkers();
  const engine = await CpuEngine.open(checkpoint, workers);
  const cpu = `the CPU: ${cpuInstructions} in ${workers} worker${workers > 1 ? "s" : ""}`;
  if (choice === "cpu") {
    const reason = `Running on ${cpu}, as you chose.`;
    return { engine, state: "ready", reason, headline: reason };
  }
  if (studio) {
    return {
      engine,
      state: "ready",
      reason: `Running on ${cpu}. This browser's WebGPU adapter${named} is a software fallback, which computes about a hundred times slower than plain WebAssembly; choose WebGPU in the Engine panel to compare.`,
      headline: `Running on ${cpu} (this browser's WebGPU adapter is a slow software fallback).`,
    };
  }
  const reason = `Running on ${cpu}, because WebGPU is not available: ${gpuError}`;
  return { engine, state: "warning", reason, headline: `Running on ${cpu}, because WebGPU is not available.` };
}

// The status line says where the engine runs in one sentence; why folds away beneath it.
export function showEngine(opened) {
  page.engine = opened.engine;
  show($("status"), opened.state, opened.headline);
  $("status-reason").textContent = opened.reason;
  $("status-why").hidden = opened.reason === opened.headline;
  $("engine-reason").textContent = opened.reason;
  document.body.dataset.engine = page.engine.kind;
}

// The Backend control: remembers the choice and moves the run (its whole state, through a
// checkpoint) to the new backend.
async function switchEngine() {
  const choice = $("engine-choice").value;
  saveEngineChoice(choice);
  const status = $("status");
  const old = page.engine;
  page.engine = null;
  trainButtons();
  try {
    show(status, "loading", "Moving the run to the other backend…");
    const bytes = await old.call("snapshot");
    old.close();
    forgetMnist();
    showEngine(await openEngine(choice, bytes));
    await refreshStatus();
    await sample();
    await showMemory();
  } catch (error) {
    if (!page.engine) page.engine = old;
    show(status, "error", `Could not switch the backend: ${message(error)}`);
  }
  trainButtons();
}

export function wireBackend() {
  $("engine-choice").addEventListener("change", switchEngine);
}
