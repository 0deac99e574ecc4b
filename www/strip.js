// The noise-strip panel: a training digit noised along a strip of times (top row) and the
// model's f(x_t, t) under each (bottom row), with how far f strays from the digit and what the
// classifier reads in the bottom row.

import { $, PIXELS, intField, message, page } from "./page.js";
import { drawDigits } from "./draw.js";
import { loadMnist } from "./mnist.js";

// Whether a strip is on show: training previews redraw it.
export let stripShown = false;

// Mean squared distance (in the model's range [-1, 1]) of each digit of `mapped` from its
// first, f at t = eps, which returns x_eps = x + eps z: the digit itself to within a gray level.
function distances(mapped, count) {
  const digit = mapped.subarray(0, PIXELS);
  return Array.from({ length: count }, (_, i) => {
    let sum = 0;
    for (let p = 0; p < PIXELS; p++) sum += ((mapped[i * PIXELS + p] - digit[p]) / 127.5) ** 2;
    return sum / PIXELS;
  });
}

// `quiet`: a live refresh while training, which leaves the button alone.
export async function showStrip(quiet = false) {
  const { engine } = page;
  const index = intField("strip-digit", 0, 59999);
  const seed = Number($("strip-seed").value) >>> 0;
  const count = Number($("strip-count").value);
  const out = $("strip-status");
  if (!quiet) $("strip-run").disabled = true;
  try {
    await loadMnist();
    const { times, gray } = await engine.call("trajectory", index, seed, count);
    const canvas = $("strip");
    drawDigits(canvas, gray, count, 2);
    const mapped = gray.subarray(count * PIXELS);
    // Measured up to t = 10, past which little of the digit is left in x_t.
    const upTo10 = distances(mapped, times.length).filter((_, i) => times[i] <= 10);
    const distance = upTo10.reduce((a, d) => a + d, 0) / upTo10.length;
    const classes = Array.from(await engine.call("classify", mapped)).join("");
    canvas.dataset.times = times.map((t) => t.toPrecision(3)).join(",");
    canvas.dataset.classes = classes;
    canvas.dataset.distance = distance.toFixed(4);
    const s = await engine.call("status");
    out.textContent =
      `Top: training digit ${index} at t = ${times.map((t) => Number(t.toPrecision(2))).join(", ")}. ` +
      `Bottom: f(x_t, t) of the run at step ${s.step}. The classifier reads the bottom row as ${classes}; ` +
      `mean squared distance from the digit up to t = 10: ${distance.toFixed(3)} (0 is perfect consistency).`;
    stripShown = true;
  } catch (error) {
    out.textContent = `The strip failed: ${message(error)}`;
  } finally {
    if (!quiet) $("strip-run").disabled = page.engine === null;
  }
}
