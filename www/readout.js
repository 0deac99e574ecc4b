// The live readout: with each preview while training, the classifier reads a few hundred samples
// of the run's sampling EMA (always the same noise, so readings compare step to step) and the
// page shows the share read as a digit with p >= 0.9 and each digit's share, charted over the
// steps beside the loss. Unlike the consistency loss, whose target moves with the curriculum,
// these numbers rise as the digits become readable. The run keeps the readings: a downloaded or
// autosaved run carries its curve (Studio.read_legibility, Studio.readouts).

import { $, page } from "./page.js";
import { drawReadoutChart } from "./draw.js";

// One-step samples a reading reads: 64 at first, 256 once a reading of 64 took under a quarter
// of a second (on a software GPU adapter a reading of 256 would take most of a minute). A
// diffusion teacher, sampled by its ODE, always reads 64. Rows 0-63 of the noise are the same
// either way.
const COUNTS = [64, 256];
const FAST_MS = 250;
const TEACHER_SAMPLER = { teacher: { solver: "heun", steps: 9 } };
// The same noise at every reading.
const SEED = 20261202;

let readouts = [];
let fast = false;

// A reading of the run now: samples, then the classifier. Resolves to the reading.
export async function takeReadout() {
  const teacher = page.status?.objective === "denoising";
  const count = COUNTS[Number(fast && !teacher)];
  const started = performance.now();
  const gray = await page.engine.call("sample", count, SEED, teacher ? TEACHER_SAMPLER : {});
  const reading = await page.engine.call("read_legibility", gray);
  fast ||= count === COUNTS[0] && performance.now() - started < FAST_MS;
  showReadouts([...readouts.filter((r) => r.step < reading.step), reading]);
  return reading;
}

// The run's readings (after a load, a restore or a reset).
export async function loadReadouts() {
  showReadouts(await page.engine.call("readouts"));
}

// The digits whose share lies outside 6-14% (the flag `cm eval` prints too).
const unbalanced = (shares) => shares.flatMap((s, digit) => (s < 6 || s > 14 ? [digit] : []));

function showReadouts(list) {
  readouts = list;
  const last = readouts.at(-1);
  const out = $("readout");
  out.dataset.readings = JSON.stringify(readouts.map((r) => [r.step, r.legible]));
  drawReadoutChart($("readout-chart"), readouts);
  if (!last) {
    out.dataset.legible = "";
    $("readout-legible").textContent = "—";
    $("readout-detail").textContent = "(read while training)";
    return;
  }
  out.dataset.legible = String(last.legible);
  $("readout-legible").textContent = `${Math.round(100 * last.legible)}%`;
  const off = unbalanced(last.shares);
  $("readout-detail").textContent =
    `of ${last.count} samples at step ${last.step} read as a digit with p ≥ 0.9; ` +
    (off.length ? `digits outside 6-14% of the samples: ${off.join(", ")}` : "every digit has 6-14% of the samples");
}
