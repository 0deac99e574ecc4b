// The sample panel: a batch of digits from the run's EMA weights in 1, 2 or 4 steps, what the
// project's classifier reads in them, and the last batch, from which the edit panel picks.

import { $, message, page } from "./page.js";
import { drawDigits } from "./draw.js";
import { writeUrl } from "./url.js";

// The last batch drawn: { gray, count, columns, zoom }, or null.
export let lastSamples = null;

// The digit asked for (a class-conditional model), or undefined for any.
export function chosenDigit() {
  const value = $("sample-digit").value;
  return value === "" ? undefined : Number(value);
}

// What the classifier reads in a batch, in words: how many are the digit asked for, or how
// many different digits there are.
function reading(classes, digit) {
  const count = classes.length;
  if (digit !== undefined) return `The classifier reads ${classes.filter((c) => c === digit).length} of ${count} as ${digit}.`;
  return `The classifier reads ${new Set(classes).size} different digits.`;
}

export async function sample() {
  const { engine, constants } = page;
  const steps = Number($("sample-steps").value);
  const count = Number($("sample-count").value);
  const seed = Number($("sample-seed").value) >>> 0;
  const digit = chosenDigit();
  const out = $("sample-time");
  $("sample-run").disabled = true;
  out.textContent = `Sampling ${count} digits on the ${engine.kind.toUpperCase()}…`;
  try {
    const started = performance.now();
    const gray = await engine.call("sample", count, seed, { timePoints: constants.timePoints[steps], digit });
    const ms = performance.now() - started;
    const columns = count > 16 ? 8 : 4;
    drawDigits($("samples"), gray, columns, 3);
    lastSamples = { gray, count, columns, zoom: 3 };
    // On the engine's own backend (in a CPU worker, or on the GPU), with the classifier it
    // keeps; the read-out and the timing appear together once it has answered.
    const classes = Array.from(await engine.call("classify", gray));
    $("samples").dataset.classes = classes.join("");
    out.textContent =
      `${count} ${digit === undefined ? "digits" : `${digit}s`} in ${steps} network evaluation${steps > 1 ? "s" : ""} each: ` +
      `${ms.toFixed(0)} ms per batch on the ${engine.kind.toUpperCase()}, seed ${seed}. ${reading(classes, digit)} Click a digit to edit it.`;
    out.dataset.ms = ms.toFixed(1);
  } catch (error) {
    out.textContent = `Sampling failed: ${message(error)}`;
  } finally {
    $("sample-run").disabled = false;
  }
}

export function wireSample() {
  $("sample-run").addEventListener("click", sample);
  $("sample-next").addEventListener("click", () => {
    $("sample-seed").value = (Number($("sample-seed").value) + 1) >>> 0;
    writeUrl();
    sample();
  });
  $("sample-digit").addEventListener("change", sample);
}
