// The multistep panel: Algorithm 1 frame by frame (the noise, f of it, then per time point the
// re-noised digits and f of them), each frame drawn a moment after the last.

import { $, PIXELS, message, page, sleep } from "./page.js";
import { drawDigits } from "./draw.js";
import { chosenDigit } from "./sample.js";

// The time points each choice of steps takes, as the options' labels: "2 (80, 0.8)".
export function labelTraceSteps() {
  const { T, timePoints } = page.constants;
  for (const option of $("trace-steps").options) option.textContent = `${option.value} (${[T, ...timePoints[option.value]].join(", ")})`;
}

export async function stepThrough() {
  const { engine, constants } = page;
  const points = constants.timePoints[$("trace-steps").value];
  const seed = Number($("trace-seed").value) >>> 0;
  const count = 8;
  const view = $("trace");
  $("trace-run").disabled = true;
  try {
    const { captions, gray } = await engine.call("multistep", count, seed, { timePoints: points, digit: chosenDigit() });
    view.replaceChildren();
    view.dataset.frames = "0";
    for (const [i, caption] of captions.entries()) {
      const figure = document.createElement("figure");
      const canvas = document.createElement("canvas");
      canvas.className = "digits";
      drawDigits(canvas, gray.subarray(i * count * PIXELS, (i + 1) * count * PIXELS), 2, 2);
      const text = document.createElement("figcaption");
      text.textContent = `${i + 1}. ${caption}`;
      figure.append(canvas, text);
      view.append(figure);
      view.dataset.frames = String(i + 1);
      await sleep(350);
    }
    view.dataset.captions = captions.join("|");
  } catch (error) {
    view.textContent = `Stepping through failed: ${message(error)}`;
  } finally {
    $("trace-run").disabled = page.engine === null;
  }
}
