// The engine panel's checks: the self-check (every kernel on this browser's WebGPU against the
// CPU backend compiled to wasm) and the benchmark (training steps and one-step sampling of each
// network, after which the person's run is put back).

import { $, message, page, show } from "./page.js";
import { loadMnist } from "./mnist.js";
import { settings } from "./train.js";

// A table row of these cells.
function row(cells) {
  const tr = document.createElement("tr");
  for (const text of cells) {
    const td = document.createElement("td");
    td.textContent = text;
    tr.append(td);
  }
  return tr;
}

async function selfCheck() {
  const button = $("selftest-run");
  const checkStatus = $("selftest-status");
  button.disabled = true;
  show(checkStatus, "loading", "Running every kernel on the GPU and on the CPU…");
  const started = performance.now();
  try {
    const results = await page.bindings.engine_selftest();
    $("selftest-results").querySelector("tbody").replaceChildren(
      ...results.map((r) => {
        const tr = row([r.name, r.error.toExponential(2), r.tolerance.toExponential(0), r.passed ? "ok" : "FAILED"]);
        tr.dataset.passed = r.passed;
        return tr;
      }),
    );
    $("selftest-results").hidden = false;
    const failed = results.filter((r) => !r.passed).map((r) => r.name);
    const seconds = ((performance.now() - started) / 1000).toFixed(1);
    show(
      checkStatus,
      failed.length ? "error" : "ready",
      failed.length ? `${failed.length} of ${results.length} checks failed: ${failed.join(", ")}.` : `All ${results.length} checks passed in ${seconds} s.`,
    );
  } catch (error) {
    show(checkStatus, "error", message(error));
  } finally {
    button.disabled = false;
  }
}

const timed = async (call) => {
  const started = performance.now();
  await call();
  return (performance.now() - started) / 1000;
};

// One row of the benchmark: `widths` trained for about 2 seconds, then sampled.
async function benchmarkRow(widths, batch) {
  const { engine } = page;
  await engine.call("restart", { ...settings(), widths, recipe: "improved", totalSteps: 1000 });
  await engine.call("train", 1); // compiles the pipelines, uploads MNIST
  let steps = 1;
  let seconds = await timed(() => engine.call("train", steps));
  // Enough steps for about 2 seconds of work.
  steps = Math.max(1, Math.min(50, Math.round(2 / seconds)));
  if (steps > 1) seconds = await timed(() => engine.call("train", steps));
  // One-step sampling of 64 digits, back to back (as the peers' harnesses time theirs):
  // a warm-up, then up to 7 runs or 2 seconds, at least 2 runs; median and fastest.
  await engine.call("sample", 64, 0, {});
  const runs = [];
  while (runs.length < 2 || (runs.length < 7 && runs.reduce((a, b) => a + b, 0) < 2)) {
    runs.push(await timed(() => engine.call("sample", 64, runs.length + 1, {})));
  }
  const sorted = [...runs].sort((a, b) => a - b);
  const ms = (s) => (s * 1000).toFixed(0);
  const sampling = `${ms(sorted[runs.length >> 1])} ms (fastest ${ms(sorted[0])}, ${runs.length} runs)`;
  const tr = row([widths, batch, (steps / seconds).toFixed(2), ((steps * batch) / seconds).toPrecision(2), sampling]);
  tr.dataset.widths = widths;
  tr.dataset.sampleMedianMs = ms(sorted[runs.length >> 1]);
  tr.dataset.sampleMinMs = ms(sorted[0]);
  tr.dataset.stepSeconds = (seconds / steps).toFixed(4);
  return tr;
}

async function benchmark() {
  const button = $("bench-run");
  button.disabled = true;
  const rows = $("bench-results").querySelector("tbody");
  rows.replaceChildren();
  $("bench-results").hidden = false;
  try {
    const saved = await page.engine.call("snapshot");
    await loadMnist();
    const batch = settings().batch;
    try {
      for (const widths of $("bench-configs").value.split(",")) rows.append(await benchmarkRow(widths, batch));
    } finally {
      await page.engine.call("load", saved);
    }
  } catch (error) {
    const tr = document.createElement("tr");
    tr.textContent = `benchmark failed: ${message(error)}`;
    rows.append(tr);
  } finally {
    button.disabled = false;
    $("bench-results").dataset.done = "true";
  }
}

export function wireChecks() {
  $("selftest-run").addEventListener("click", selfCheck);
  $("bench-run").addEventListener("click", benchmark);
}
