// The page: loads the engine and the pretrained run (or the run autosaved in this browser),
// then wires each panel's controls. Each panel is a module (sample, strip, trace, schedule,
// compare, train, edit, backend, checks); page.js holds what they share, and the numbers of
// the method (T, eps, the time points) come from the wasm module, not from here. Long work is
// awaited, never run in one blocking task.

import { $, PRETRAINED, fetchWithProgress, message, page, show } from "./page.js";
import { savedRun } from "./store.js";
import { wireUrl } from "./url.js";
import { refreshStatus } from "./status.js";
import { sample, wireSample } from "./sample.js";
import { showStrip } from "./strip.js";
import { labelTraceSteps, stepThrough } from "./trace.js";
import { compare } from "./compare.js";
import { chartLosses, loadDistilled, trainButtons, wireTrain } from "./train.js";
import { editKindChanged, wireEdit } from "./edit.js";
import { showMemory } from "./memory.js";
import { engineChoice, openEngine, showEngine, wireBackend } from "./backend.js";
import { loadReadouts } from "./readout.js";
import { wireChecks } from "./checks.js";

// Text in the page's prose that names a constant of the method (`data-constant="T"`).
function fillConstants() {
  for (const el of document.querySelectorAll("[data-constant]")) el.textContent = page.constants[el.dataset.constant];
  labelTraceSteps();
  editKindChanged();
}

async function start() {
  page.bindings = window.wasmBindings;
  page.constants = page.bindings.constants();
  // A phone shows 16 digits, large enough to read, rather than 64 small ones.
  if (matchMedia("(max-width: 600px)").matches) $("sample-count").value = "16";
  fillConstants();
  const status = $("status");
  let pretrained;
  try {
    pretrained = await fetchWithProgress(PRETRAINED, $("load-model"));
  } catch (error) {
    show(status, "error", `The pretrained model did not load: ${message(error)}`);
    return;
  }
  let saved = null;
  try {
    saved = await savedRun();
  } catch (error) {
    console.warn(`no saved run: ${message(error)}`);
  }
  show(status, "loading", "Opening the engine…");
  const choice = engineChoice();
  $("engine-choice").value = choice;
  try {
    showEngine(await openEngine(choice, pretrained));
    // The progress bars have done their job: the first screen is for digits.
    $("loading").hidden = true;
  } catch (error) {
    show(status, "error", `The engine did not start: ${message(error)}`);
    return;
  }
  $("bench-run").disabled = false;
  let losses = [];
  if (saved) {
    try {
      await page.engine.call("load", saved.bytes);
      losses = saved.losses ?? [];
      const when = new Date(saved.savedAt).toLocaleString();
      show($("train-status"), "ready", `Restored your run from this browser (saved ${when}). "Pretrained model" goes back to the shipped one.`);
    } catch (error) {
      show($("train-status"), "error", `Your saved run could not be restored (${message(error)}); starting from the pretrained model.`);
    }
  }
  chartLosses(losses);
  await refreshStatus();
  await loadReadouts();
  for (const id of ["sample-run", "sample-next", "edit-run", "strip-run", "trace-run"]) $(id).disabled = false;
  trainButtons();
  await sample();
  await showMemory();
  document.body.dataset.ready = "true";
}

function wire() {
  wireUrl();
  wireSample();
  $("strip-run").addEventListener("click", () => showStrip());
  $("trace-run").addEventListener("click", stepThrough);
  $("compare-run").addEventListener("click", compare);
  $("compare-load").addEventListener("click", loadDistilled);
  wireTrain();
  wireEdit();
  wireBackend();
  wireChecks();
}

wire();
// Trunk's loader sets window.wasmBindings and then fires TrunkApplicationStarted; either may
// already have happened by the time this module runs.
if (window.wasmBindings) start();
else addEventListener("TrunkApplicationStarted", start, { once: true });
