// The edit panel (section 7): a digit drawn here or picked from the samples, then inpainted
// (where painted red), super-resolved, denoised or SDEdited; or an interpolation between the
// noises of two seeds.

import { $, PIXELS, SIDE, message, page } from "./page.js";
import { drawDigit, drawDigits } from "./draw.js";
import { lastSamples } from "./sample.js";

const edit = {
  source: new Uint8Array(PIXELS),
  mask: new Uint8Array(PIXELS), // 1 = to regenerate (inpainting)
  drawing: false,
};

// The noise level slider: sigma for denoising, the starting t for SDEdit, on a log scale from
// 0.1 to T.
function editLevel() {
  const u = Number($("edit-level").value) / 100;
  return Number((0.1 * (page.constants.T / 0.1) ** u).toPrecision(3));
}

// Shows the controls and the source of the chosen edit.
export function editKindChanged() {
  const kind = $("edit-kind").value;
  const level = kind === "denoise" || kind === "sdedit";
  $("edit-level-label").hidden = !level;
  // Before the module has loaded there is no T to scale the slider by.
  $("edit-level-value").textContent = level && page.constants ? `t = ${editLevel()}` : "";
  $("edit-source-caption").textContent =
    kind === "inpaint" ? "source: paint the region to redo" : kind === "interpolate" ? "(not used)" : "source: draw here, or click a sample";
  drawDigit($("edit-source"), edit.source, kind === "inpaint" ? edit.mask : null);
}

function paint(event) {
  const canvas = $("edit-source");
  const rect = canvas.getBoundingClientRect();
  const cx = ((event.clientX - rect.left) / rect.width) * SIDE;
  const cy = ((event.clientY - rect.top) / rect.height) * SIDE;
  const inpaint = $("edit-kind").value === "inpaint";
  for (let y = 0; y < SIDE; y++) {
    for (let x = 0; x < SIDE; x++) {
      const d = Math.hypot(x + 0.5 - cx, y + 0.5 - cy);
      const i = y * SIDE + x;
      if (inpaint) {
        if (d < 2.2) edit.mask[i] = 1;
      } else {
        // A soft round pen, about as wide as an MNIST stroke.
        edit.source[i] = Math.max(edit.source[i], Math.round(255 * Math.min(1, Math.max(0, 1.8 - d))));
      }
    }
  }
  drawDigit(canvas, edit.source, inpaint ? edit.mask : null);
}

function pickSample(event) {
  if (!lastSamples) return;
  const canvas = $("samples");
  const rect = canvas.getBoundingClientRect();
  const cell = (SIDE * lastSamples.zoom + 2) * (rect.width / canvas.width);
  const column = Math.floor((event.clientX - rect.left) / cell);
  const row = Math.floor((event.clientY - rect.top) / cell);
  const index = row * lastSamples.columns + column;
  if (column >= lastSamples.columns || index >= lastSamples.count) return;
  edit.source = lastSamples.gray.slice(index * PIXELS, (index + 1) * PIXELS);
  edit.mask.fill(0);
  editKindChanged();
  $("edit-heading").scrollIntoView();
}

async function runEdit() {
  const { engine } = page;
  const kind = $("edit-kind").value;
  const seed = Number($("edit-seed").value) >>> 0;
  const status = $("edit-status");
  $("edit-run").disabled = true;
  status.textContent = "Editing…";
  try {
    const started = performance.now();
    let result;
    $("edit-strip").hidden = kind !== "interpolate";
    if (kind === "interpolate") {
      const count = 8;
      const strip = await engine.call("interpolate", seed, seed + 1, count);
      drawDigits($("edit-strip"), strip, count, 2);
      result = strip.slice(0, PIXELS);
    } else {
      let pair;
      if (kind === "inpaint") {
        const keep = edit.mask.map((m) => 1 - m);
        pair = await engine.call("inpaint", edit.source, keep, seed);
      } else if (kind.startsWith("superres")) {
        pair = await engine.call("super_resolve", edit.source, kind === "superres-7" ? 4 : 2, seed);
      } else if (kind === "denoise") {
        pair = await engine.call("denoise", edit.source, editLevel(), seed);
      } else {
        pair = await engine.call("sdedit", edit.source, editLevel(), seed);
      }
      drawDigit($("edit-input"), pair.slice(0, PIXELS), kind === "inpaint" ? edit.mask : null);
      result = pair.slice(PIXELS);
      drawDigit($("edit-output"), result);
    }
    $("edit-output").dataset.gray = Array.from(result).join(",");
    $("edit-source").dataset.gray = Array.from(edit.source).join(",");
    $("edit-source").dataset.mask = Array.from(edit.mask).join(",");
    status.textContent = `Done in ${(performance.now() - started).toFixed(0)} ms on the ${engine.kind.toUpperCase()}.`;
  } catch (error) {
    status.textContent = `The edit failed: ${message(error)}`;
  } finally {
    $("edit-run").disabled = false;
  }
}

export function wireEdit() {
  $("samples").addEventListener("click", pickSample);
  $("edit-kind").addEventListener("change", editKindChanged);
  $("edit-level").addEventListener("input", editKindChanged);
  $("edit-clear").addEventListener("click", () => {
    edit.source.fill(0);
    edit.mask.fill(0);
    editKindChanged();
  });
  const source = $("edit-source");
  source.addEventListener("pointerdown", (e) => {
    edit.drawing = true;
    source.setPointerCapture(e.pointerId);
    paint(e);
  });
  source.addEventListener("pointermove", (e) => edit.drawing && paint(e));
  source.addEventListener("pointerup", () => (edit.drawing = false));
  $("edit-run").addEventListener("click", runEdit);
  editKindChanged();
}
