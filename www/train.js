// The train panel: a run trained a chunk of steps per call, sized to about half a second, the
// loop driven by the engine's promises (not by requestAnimationFrame), so it keeps going in a
// background tab and input is answered between chunks; previews, autosave in this browser,
// pause and resume, a fresh run from the settings, and runs downloaded, uploaded or shipped.

import { $, DISTILLED, PRETRAINED, TEACHER, fetchWithProgress, message, page, show } from "./page.js";
import { drawDigits, drawLossChart } from "./draw.js";
import { forgetRun, saveRun } from "./store.js";
import { askedChunk } from "./url.js";
import { loadMnist } from "./mnist.js";
import { refreshStatus } from "./status.js";
import { compareButtons } from "./compare.js";
import { sample } from "./sample.js";
import { showStrip, stripShown } from "./strip.js";
import { loadReadouts, takeReadout } from "./readout.js";
import { showMemory } from "./memory.js";

// The one-click route from a diffusion teacher, its learning rate and batch (docs/results.md,
// "The page's minutes: from the teacher").
const TEACHER_ROUTE = { recipe: "distill", lr: "0.001", batch: "64" };

const AUTOSAVE_SECONDS = 30;
const PREVIEW_SECONDS = 3;
// The live readout samples a few hundred digits: not at every preview.
const READOUT_SECONDS = 15;

const train = {
  losses: [], // [step, loss]
  lastSave: 0,
  lastPreview: 0,
  previewGap: PREVIEW_SECONDS * 1000,
  // The first reading comes one gap into training: a fresh run's digits say nothing yet.
  lastReadout: performance.now(),
  readoutGap: READOUT_SECONDS * 1000,
  maxLag: 0,
};

// The loss curve so far (also in a data attribute, for the tests).
export function chartLosses(losses = train.losses) {
  train.losses = losses;
  const canvas = $("loss-chart");
  canvas.dataset.points = JSON.stringify(train.losses);
  drawLossChart(canvas, train.losses);
}

// The Train panel's settings, as `Studio.restart` takes them.
export function settings() {
  const form = new FormData($("settings"));
  return {
    widths: form.get("widths"),
    recipe: form.get("recipe"),
    loss: form.get("loss") || undefined,
    totalSteps: Number(form.get("totalSteps")),
    batch: Number(form.get("batch")),
    lr: Number(form.get("lr")),
    seed: Number(form.get("seed")),
    conditional: form.get("conditional") === "on",
  };
}

export function trainButtons() {
  const idle = page.engine !== null && !page.training;
  $("train-run").disabled = !idle;
  $("train-pause").disabled = !page.training;
  for (const id of ["train-reset", "train-from-teacher", "train-minutes", "train-download", "train-upload", "train-pretrained", "train-distilled", "engine-choice"]) {
    $(id).disabled = !idle;
  }
  compareButtons();
  $("train-run").textContent = train.losses.length && !page.training ? "Resume" : "Train";
}

// 16 digits from the EMA weights, and (less often, or with `reading`) the live readout. On a
// slow adapter a preview can cost as much as several training steps, so the next one waits at
// least five times as long as this one took, and the next reading ten times as long.
async function preview({ reading = false } = {}) {
  let started = performance.now();
  const gray = await page.engine.call("sample", 16, 0, {});
  drawDigits($("train-samples"), gray, 4, 2);
  if (stripShown) await showStrip(true);
  await showMemory();
  train.lastPreview = performance.now();
  train.previewGap = Math.max(PREVIEW_SECONDS * 1000, 5 * (train.lastPreview - started));
  if (!reading && train.lastPreview - train.lastReadout < train.readoutGap) return;
  started = performance.now();
  await takeReadout();
  train.lastReadout = performance.now();
  train.readoutGap = Math.max(READOUT_SECONDS * 1000, 10 * (train.lastReadout - started));
}

async function autosave() {
  const bytes = await page.engine.call("snapshot");
  await saveRun({ bytes, losses: train.losses, savedAt: Date.now() });
  train.lastSave = performance.now();
}

// How late the page answers: a timer asks for 100 ms and we record how much later it ran. Long
// tasks on the page's thread (what would make clicks and typing lag) show up here.
function watchLag() {
  let expected = performance.now() + 100;
  const tick = () => {
    if (!page.training) return;
    const now = performance.now();
    // Hidden tabs throttle timers on purpose; that is not lag a person could feel.
    if (!document.hidden) train.maxLag = Math.max(train.maxLag, now - expected);
    $("stat-lag").textContent = `${train.maxLag.toFixed(0)} ms`;
    expected = now + 100;
    setTimeout(tick, 100);
  };
  setTimeout(tick, 100);
}

async function trainLoop() {
  if (page.training) return;
  page.training = true;
  train.maxLag = 0;
  trainButtons();
  const status = $("train-status");
  const maxChunk = askedChunk() ?? 64;
  try {
    await loadMnist();
    let chunk = 1;
    let status0 = await refreshStatus();
    // A run below K stops at K, the end of its curriculum; one already past it (the pretrained
    // run) goes on at its final N until paused.
    const stopAt = status0.step < status0.totalSteps ? status0.totalSteps : Infinity;
    show(status, "ready", "Training…");
    watchLag();
    train.lastReadout = performance.now();
    while (page.training && status0.step < stopAt) {
      chunk = Math.min(chunk, stopAt - status0.step);
      const started = performance.now();
      const loss = await page.engine.call("train", chunk);
      const seconds = (performance.now() - started) / 1000;
      status0 = await refreshStatus();
      train.losses.push([status0.step, loss]);
      const rate = chunk / seconds;
      $("stat-loss").textContent = loss.toPrecision(4);
      $("stat-rate").textContent = rate.toFixed(2);
      $("stat-images").textContent = (rate * status0.batch).toFixed(0);
      chartLosses();
      // Aim at about half a second per call: long enough to amortize the readback, short
      // enough for Pause to answer at once.
      chunk = Math.max(1, Math.min(maxChunk, Math.round(0.5 * rate)));
      const now = performance.now();
      if (now - train.lastPreview > train.previewGap) await preview();
      if (now - train.lastSave > AUTOSAVE_SECONDS * 1000) await autosave();
    }
    await preview({ reading: true });
    await autosave();
    page.training = false;
    trainButtons();
    if (status0.step >= stopAt) show(status, "ready", `Reached step ${status0.step}, the end of the curriculum (K).`);
    else show(status, "ready", `Paused at step ${status0.step}; saved in this browser.`);
  } catch (error) {
    // A NaN loss or a lost device: the engine is back at its last good state.
    show(status, "error", message(error));
    try {
      await refreshStatus();
      await preview();
    } catch (again) {
      show(status, "error", `${message(error)} The GPU no longer answers (${message(again)}); reload the page: your last autosave is kept.`);
    }
  } finally {
    page.training = false;
    trainButtons();
  }
}

// Measures this engine's training speed on the fresh run (a warm-up call, then about three
// seconds of steps) and starts the run again with its curriculum planned for `minutes`: K is
// the steps that fit, less a tenth for the previews and readings. Resolves to { rate, total }.
async function planForMinutes(minutes) {
  show($("train-status"), "loading", "Measuring this engine's training speed for the plan…");
  await loadMnist();
  await page.engine.call("train", 1);
  let steps = 0;
  let chunk = 1;
  const started = performance.now();
  while (performance.now() - started < 3000) {
    const t0 = performance.now();
    await page.engine.call("train", chunk);
    steps += chunk;
    chunk = Math.max(1, Math.round((0.5 * chunk * 1000) / (performance.now() - t0)));
  }
  const rate = steps / ((performance.now() - started) / 1000);
  const total = Math.max(100, Math.round(0.9 * rate * minutes * 60));
  const field = $("settings").elements.totalSteps;
  field.value = String(total);
  field.dispatchEvent(new Event("change", { bubbles: true }));
  await page.engine.call("restart", settings());
  return { rate, total };
}

async function resetRun() {
  try {
    await page.engine.call("restart", settings());
    const minutes = Number($("train-minutes").value);
    const plan = minutes > 0 ? await planForMinutes(minutes) : null;
    chartLosses([]);
    await refreshStatus();
    await loadReadouts();
    await preview();
    await autosave();
    const planned = plan
      ? `, planned for about ${minutes} minutes (K = ${plan.total.toLocaleString("en")} steps at the ${plan.rate.toFixed(1)} steps/s measured here)`
      : "";
    show($("train-status"), "ready", `A fresh run at step 0${planned}; press Train.`);
    return true;
  } catch (error) {
    show($("train-status"), "error", message(error));
    return false;
  } finally {
    trainButtons();
  }
}

// One click from the paper's teacher to a one-step model: the loaded run if it is a diffusion
// teacher, else the shipped tiny teacher; a fresh run of the teacher route planned for the
// chosen minutes, trained.
async function fromTeacher() {
  if (page.status?.objective !== "denoising") await loadShipped(TEACHER, "the tiny teacher");
  if (page.status?.objective !== "denoising") return; // the load failed and said why
  const form = $("settings").elements;
  for (const [name, value] of Object.entries(TEACHER_ROUTE)) {
    form[name].value = value;
    form[name].dispatchEvent(new Event("change", { bubbles: true }));
  }
  if (await resetRun()) await trainLoop();
}

async function download() {
  const bytes = await page.engine.call("snapshot");
  const s = await page.engine.call("status");
  const link = document.createElement("a");
  link.href = URL.createObjectURL(new Blob([bytes], { type: "application/octet-stream" }));
  link.download = `consistency-${s.widths.join("-")}-step${s.step}.safetensors`;
  link.click();
  setTimeout(() => URL.revokeObjectURL(link.href), 10_000);
}

async function loadRun(bytes, what) {
  try {
    await page.engine.call("load", bytes);
    chartLosses([]);
    const s = await refreshStatus();
    await loadReadouts();
    await preview();
    await autosave();
    show($("train-status"), "ready", `Loaded ${what}: step ${s.step}.`);
    await sample();
  } catch (error) {
    show($("train-status"), "error", `${what}: ${message(error)}. Nothing was changed.`);
  }
}

// A shipped run in place of this browser's.
async function loadShipped(file, what) {
  await forgetRun();
  $("loading").hidden = false;
  const bytes = await fetchWithProgress(file, $("load-model")).finally(() => ($("loading").hidden = true));
  await loadRun(bytes, what);
}

export const loadDistilled = () => loadShipped(DISTILLED, "the distilled model");

export function wireTrain() {
  $("train-run").addEventListener("click", trainLoop);
  $("train-pause").addEventListener("click", () => {
    page.training = false;
    $("train-pause").disabled = true;
  });
  $("train-reset").addEventListener("click", resetRun);
  $("train-from-teacher").addEventListener("click", fromTeacher);
  $("train-download").addEventListener("click", download);
  $("train-upload").addEventListener("change", async (event) => {
    const file = event.target.files[0];
    if (file) await loadRun(new Uint8Array(await file.arrayBuffer()), file.name);
    event.target.value = "";
  });
  $("train-pretrained").addEventListener("click", () => loadShipped(PRETRAINED, "the pretrained model"));
  $("train-distilled").addEventListener("click", loadDistilled);
}
