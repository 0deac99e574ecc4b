// The page: loads the engine and the pretrained run, then wires Sample, Train, Edit and the
// engine panel to the Studio (src/web.rs). Long work is awaited, never run in one blocking
// task: training goes a chunk of steps per call, sized to about half a second, and the loop is
// driven by the GPU's promises, not by requestAnimationFrame, so it keeps going in a background
// tab and input is answered between chunks.

import { CpuEngine, LocalEngine, defaultWorkers } from "./engine.js";

const $ = (id) => document.getElementById(id);
const SIDE = 28;
const PIXELS = SIDE * SIDE;
const T_MAX = 80;
const EPS = 0.002;
// Algorithm 1's intermediate time points for 2 and 4 steps (descending, in (eps, T)).
const TIME_POINTS = { 1: [], 2: [0.8], 4: [8, 2, 0.5] };
const PRETRAINED = "consistency-small.safetensors";
// Distilled from a diffusion teacher (Algorithm 2), class-conditional; the file carries the
// teacher, which the comparison panel samples.
const DISTILLED = "distilled-tiny.safetensors";
const AUTOSAVE_SECONDS = 30;
const PREVIEW_SECONDS = 3;

let bindings = null;
let engine = null;
let lastSamples = null; // { gray, count, columns, zoom }

// ---- small helpers ---------------------------------------------------------------------------

function message(error) {
  return error instanceof Error ? error.message : String(error);
}

function show(el, state, text) {
  el.hidden = false;
  el.dataset.state = state;
  el.textContent = text;
}

// Fetches a file with a progress bar; resolves to its bytes.
async function fetchWithProgress(url, bar) {
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

// Draws 28x28 gray digits in a grid (2-pixel gaps, each pixel a zoom x zoom square).
function drawDigits(canvas, gray, columns, zoom) {
  const count = gray.length / PIXELS;
  const cell = SIDE * zoom + 2;
  const rows = Math.ceil(count / columns);
  canvas.width = columns * cell + 2;
  canvas.height = rows * cell + 2;
  const ctx = canvas.getContext("2d");
  const picture = ctx.createImageData(canvas.width, canvas.height);
  for (let i = 0; i < count; i++) {
    const left = (i % columns) * cell + 2;
    const top = Math.floor(i / columns) * cell + 2;
    for (let y = 0; y < SIDE * zoom; y++) {
      for (let x = 0; x < SIDE * zoom; x++) {
        const v = gray[i * PIXELS + Math.floor(y / zoom) * SIDE + Math.floor(x / zoom)];
        const p = ((top + y) * canvas.width + left + x) * 4;
        picture.data[p] = picture.data[p + 1] = picture.data[p + 2] = v;
        picture.data[p + 3] = 255;
      }
    }
  }
  ctx.putImageData(picture, 0, 0);
}

// One digit on a 224x224 canvas, with an optional red overlay where `mask` is 1.
function drawDigit(canvas, gray, mask = null) {
  const ctx = canvas.getContext("2d");
  const zoom = canvas.width / SIDE;
  const picture = ctx.createImageData(canvas.width, canvas.height);
  for (let y = 0; y < canvas.height; y++) {
    for (let x = 0; x < canvas.width; x++) {
      const i = Math.floor(y / zoom) * SIDE + Math.floor(x / zoom);
      const p = (y * canvas.width + x) * 4;
      const v = gray[i];
      const red = mask && mask[i];
      picture.data[p] = red ? Math.max(v, 160) : v;
      picture.data[p + 1] = red ? v * 0.4 : v;
      picture.data[p + 2] = red ? v * 0.4 : v;
      picture.data[p + 3] = 255;
    }
  }
  ctx.putImageData(picture, 0, 0);
}

// ---- saved runs in this browser (IndexedDB) -------------------------------------------------

const DB = "consistency-studio";
const STORE = "runs";

function openDb() {
  return new Promise((resolve, reject) => {
    const request = indexedDB.open(DB, 1);
    request.onupgradeneeded = () => request.result.createObjectStore(STORE);
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
}

async function dbDo(mode, action) {
  const db = await openDb();
  try {
    return await new Promise((resolve, reject) => {
      const request = action(db.transaction(STORE, mode).objectStore(STORE));
      request.onsuccess = () => resolve(request.result);
      request.onerror = () => reject(request.error);
    });
  } finally {
    db.close();
  }
}

const savedRun = () => dbDo("readonly", (s) => s.get("autosave"));
const saveRun = (run) => dbDo("readwrite", (s) => s.put(run, "autosave"));
const forgetRun = () => dbDo("readwrite", (s) => s.delete("autosave"));

// ---- status read-outs -----------------------------------------------------------------------

const train = {
  running: false,
  losses: [], // [step, loss]
  lastSave: 0,
  lastPreview: 0,
  previewGap: PREVIEW_SECONDS * 1000,
  maxLag: 0,
};

async function refreshStatus() {
  const s = await engine.call("status");
  $("stat-step").textContent = `${s.step} / ${s.totalSteps}`;
  $("stat-n").textContent = s.discretization;
  $("stat-mu").textContent = s.mu.toFixed(4);
  $("run-info").textContent =
    `Run: ${s.widths.join("/")} channels, ${s.parameters.toLocaleString("en")} parameters,` +
    `${s.classes ? " class-conditional," : ""} ${s.recipe} on ${s.backend.trim()}.`;
  const digit = $("sample-digit");
  digit.disabled = s.classes === 0;
  if (digit.disabled) digit.value = "";
  digit.title = digit.disabled ? "this model is unconditional: it was not trained with labels" : "the digit to draw";
  run.hasTeacher = s.hasTeacher;
  run.objective = s.objective;
  run.guidance = s.guidance;
  compareButtons();
  await drawSchedule();
  return s;
}

// What the loaded run can do, from its status.
const run = { hasTeacher: false, objective: "consistency", guidance: 1 };

// ---- compare: the teacher's ODE against the consistency model's one step ----------------------

function compareButtons() {
  const ready = engine !== null && !train.running;
  $("compare-run").disabled = !ready || !run.hasTeacher || run.objective === "denoising";
  $("compare-load").disabled = !ready;
  $("compare-load").hidden = run.hasTeacher;
}

async function compare() {
  const solver = $("compare-solver").value;
  const steps = Math.max(1, Math.min(80, Math.round(Number($("compare-steps").value)) || 1));
  const seed = Number($("compare-seed").value) >>> 0;
  const digit = $("sample-digit").value === "" ? undefined : Number($("sample-digit").value);
  const out = $("compare-status");
  const count = 16;
  $("compare-run").disabled = true;
  out.textContent = `Sampling ${count} digits with the teacher (${solver}, ${steps} steps) and the consistency model…`;
  try {
    const timed = async (options) => {
      const started = performance.now();
      const gray = await engine.call("sample", count, seed, { digit, ...options });
      return [gray, performance.now() - started];
    };
    const [teacher, teacherMs] = await timed({ teacher: { solver, steps } });
    const [student, studentMs] = await timed({});
    drawDigits($("compare-teacher"), teacher, 4, 3);
    drawDigits($("compare-student"), student, 4, 3);
    const evaluations = solver === "heun" ? 2 * steps - 1 : steps;
    const guided = run.guidance !== 1 && digit !== undefined ? `, each twice for guidance w = ${run.guidance}` : "";
    $("compare-teacher-caption").textContent =
      `teacher: ${solver}, ${steps} step${steps > 1 ? "s" : ""} (${evaluations} evaluations${guided}), ${teacherMs.toFixed(0)} ms`;
    $("compare-student-caption").textContent = `consistency model: 1 step (1 evaluation), ${studentMs.toFixed(0)} ms`;
    $("compare-teacher").dataset.ms = teacherMs.toFixed(1);
    $("compare-student").dataset.ms = studentMs.toFixed(1);
    out.textContent =
      `Same noise (seed ${seed}${digit === undefined ? "" : `, digit ${digit}`}) on the ${engine.kind.toUpperCase()}: ` +
      `the consistency model was ${(teacherMs / studentMs).toFixed(1)}x faster.`;
  } catch (error) {
    out.textContent = `Comparing failed: ${message(error)}`;
  } finally {
    compareButtons();
  }
}

async function loadDistilled() {
  await forgetRun();
  await loadRun(await fetchWithProgress(DISTILLED, $("load-model")), "the distilled model");
}

// A cleared chart canvas, its text set up in the page's colour.
function blankChart(canvas) {
  const ctx = canvas.getContext("2d");
  const { width, height } = canvas;
  const style = getComputedStyle(document.body);
  ctx.clearRect(0, 0, width, height);
  ctx.font = "11px system-ui, sans-serif";
  ctx.fillStyle = style.color;
  return { ctx, width, height, style };
}

function drawLossChart() {
  const canvas = $("loss-chart");
  canvas.dataset.points = JSON.stringify(train.losses);
  const { ctx, width, height, style } = blankChart(canvas);
  const points = train.losses.filter(([, loss]) => loss > 0);
  if (points.length < 2) {
    ctx.fillText("the loss curve appears here while training", 12, height / 2);
    return;
  }
  const pad = { left: 48, right: 8, top: 8, bottom: 22 };
  const steps = points.map(([s]) => s);
  const logs = points.map(([, l]) => Math.log10(l));
  const [x0, x1] = [Math.min(...steps), Math.max(...steps)];
  const [y0, y1] = [Math.floor(Math.min(...logs) * 2) / 2, Math.ceil(Math.max(...logs) * 2) / 2 || 1];
  const px = (s) => pad.left + ((s - x0) / Math.max(1, x1 - x0)) * (width - pad.left - pad.right);
  const py = (l) => pad.top + ((y1 - l) / Math.max(0.5, y1 - y0)) * (height - pad.top - pad.bottom);
  ctx.strokeStyle = "rgba(128,128,128,0.35)";
  ctx.beginPath();
  for (let l = y0; l <= y1 + 1e-9; l += 0.5) {
    ctx.moveTo(pad.left, py(l));
    ctx.lineTo(width - pad.right, py(l));
    ctx.fillText(`${Number((10 ** l).toPrecision(2))}`, 4, py(l) + 4);
  }
  ctx.stroke();
  ctx.fillText(`step ${x0}`, pad.left, height - 6);
  ctx.fillText(`${x1}`, width - pad.right - 30, height - 6);
  ctx.strokeStyle = "#3b82f6";
  ctx.lineWidth = 1.5;
  ctx.beginPath();
  points.forEach(([s], i) => (i ? ctx.lineTo(px(s), py(logs[i])) : ctx.moveTo(px(s), py(logs[i]))));
  ctx.stroke();
  ctx.lineWidth = 1;
}

// ---- see the idea: the noise strip, multistep step by step, the schedule ------------------------

const strip = { shown: false };

// A training digit noised along a strip of times (top row) and f(x_t, t) under each (bottom row).
// `quiet`: a live refresh while training, which leaves the buttons alone.
async function showStrip(quiet = false) {
  const index = Math.max(0, Math.min(59999, Math.round(Number($("strip-digit").value)) || 0));
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
    // How far f(x_t, t) strays from the digit: at t = eps, f returns x_eps = x + eps z, the
    // digit itself to within a gray level. Measured up to t = 10, past which little of the
    // digit is left in x_t.
    const digit = mapped.subarray(0, PIXELS);
    const distances = times.map((_, i) => {
      let sum = 0;
      for (let p = 0; p < PIXELS; p++) sum += ((mapped[i * PIXELS + p] - digit[p]) / 127.5) ** 2;
      return sum / PIXELS;
    });
    const upTo10 = distances.filter((_, i) => times[i] <= 10);
    const distance = upTo10.reduce((a, d) => a + d, 0) / upTo10.length;
    const classes = Array.from(await bindings.classify_digits(mapped)).join("");
    canvas.dataset.times = times.map((t) => t.toPrecision(3)).join(",");
    canvas.dataset.classes = classes;
    canvas.dataset.distance = distance.toFixed(4);
    const s = await engine.call("status");
    out.textContent =
      `Top: training digit ${index} at t = ${times.map((t) => Number(t.toPrecision(2))).join(", ")}. ` +
      `Bottom: f(x_t, t) of the run at step ${s.step}. The classifier reads the bottom row as ${classes}; ` +
      `mean squared distance from the digit up to t = 10: ${distance.toFixed(3)} (0 is perfect consistency).`;
    strip.shown = true;
  } catch (error) {
    out.textContent = `The strip failed: ${message(error)}`;
  } finally {
    if (!quiet) $("strip-run").disabled = engine === null;
  }
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// Algorithm 1 frame by frame: each frame is drawn a moment after the last.
async function stepThrough() {
  const points = $("trace-steps").value === "4" ? [8, 2, 0.5] : [0.8];
  const seed = Number($("trace-seed").value) >>> 0;
  const digit = $("sample-digit").value === "" ? undefined : Number($("sample-digit").value);
  const count = 8;
  const view = $("trace");
  $("trace-run").disabled = true;
  try {
    const { captions, gray } = await engine.call("multistep", count, seed, { timePoints: points, digit });
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
    $("trace-run").disabled = engine === null;
  }
}

// N(k) (blue, left axis) and mu(k) (orange, right axis) over the curriculum, the current step
// marked, and the time grid at that step as ticks on a log axis of t.
async function drawSchedule() {
  const v = await engine.call("schedule");
  const canvas = $("schedule");
  const { ctx, width, height, style } = blankChart(canvas);
  canvas.dataset.step = String(v.step);
  canvas.dataset.grid = String(v.grid.length);
  const pad = { left: 44, right: 44, top: 10 };
  const chartBottom = height - 70;
  const total = Math.max(1, v.totalSteps);
  const px = (k) => pad.left + (Math.min(k, total) / total) * (width - pad.left - pad.right);
  const nMax = Math.max(2, ...v.discretization);
  const pyN = (n) => chartBottom - (n / nMax) * (chartBottom - pad.top);
  const pyMu = (mu) => chartBottom - mu * (chartBottom - pad.top);
  ctx.strokeStyle = "rgba(128,128,128,0.5)";
  ctx.strokeRect(pad.left, pad.top, width - pad.left - pad.right, chartBottom - pad.top);
  const line = (values, py, color) => {
    ctx.strokeStyle = color;
    ctx.lineWidth = 1.5;
    ctx.beginPath();
    v.steps.forEach((k, i) => (i ? ctx.lineTo(px(k), py(values[i])) : ctx.moveTo(px(k), py(values[i]))));
    ctx.stroke();
    ctx.lineWidth = 1;
  };
  if (v.discretization.some((n) => n > 0)) line(v.discretization, pyN, "#3b82f6");
  line(v.mu, pyMu, "#f59e0b");
  ctx.fillStyle = "#3b82f6";
  ctx.fillText(`N(k) ${nMax}`, 2, pad.top + 10);
  ctx.fillText("0", pad.left - 12, chartBottom);
  ctx.fillStyle = "#f59e0b";
  ctx.fillText("mu 1", width - pad.right + 4, pad.top + 10);
  ctx.fillText("0", width - pad.right + 4, chartBottom);
  ctx.fillStyle = style.color;
  ctx.fillText(`step 0`, pad.left, chartBottom + 14);
  ctx.fillText(`K = ${v.totalSteps}`, width - pad.right - 50, chartBottom + 14);
  ctx.strokeStyle = "#dc2626";
  ctx.beginPath();
  ctx.moveTo(px(v.step), pad.top);
  ctx.lineTo(px(v.step), chartBottom);
  ctx.stroke();
  // The grid on log t, eps .. T.
  const axis = height - 30;
  const pt = (t) => pad.left + (Math.log(t / EPS) / Math.log(T_MAX / EPS)) * (width - pad.left - pad.right);
  ctx.strokeStyle = style.color;
  ctx.beginPath();
  ctx.moveTo(pt(EPS), axis);
  ctx.lineTo(pt(T_MAX), axis);
  for (const t of v.grid) {
    ctx.moveTo(pt(t), axis - 6);
    ctx.lineTo(pt(t), axis + 6);
  }
  ctx.stroke();
  ctx.fillText(`t = ${EPS}`, pad.left, height - 6);
  ctx.fillText(`${T_MAX}`, width - pad.right - 12, height - 6);
  ctx.fillText(
    v.grid.length ? `the time grid at step ${v.step}: N = ${v.grid.length} points` : "this recipe has no time grid",
    width / 2 - 90,
    height - 6,
  );
}

// ---- the page's settings in its address --------------------------------------------------------

// Every setting a person changes is mirrored into the query string, so that a link reproduces
// what they see: the training settings, the sampling steps, count, digit and seed, and the
// views' digit and seeds. Values equal to the page's defaults are left out.
const URL_FIELDS = {
  config: () => $("settings").elements.widths,
  recipe: () => $("settings").elements.recipe,
  loss: () => $("settings").elements.loss,
  K: () => $("settings").elements.totalSteps,
  batch: () => $("settings").elements.batch,
  lr: () => $("settings").elements.lr,
  seed: () => $("settings").elements.seed,
  conditional: () => $("settings").elements.conditional,
  steps: () => $("sample-steps"),
  count: () => $("sample-count"),
  digit: () => $("sample-digit"),
  sampleSeed: () => $("sample-seed"),
  stripDigit: () => $("strip-digit"),
  stripSeed: () => $("strip-seed"),
  stripCount: () => $("strip-count"),
  traceSteps: () => $("trace-steps"),
  traceSeed: () => $("trace-seed"),
};

function fieldValue(el) {
  return el.type === "checkbox" ? (el.checked ? "1" : "0") : el.value;
}

function fieldDefault(el) {
  if (el.type === "checkbox") return el.defaultChecked ? "1" : "0";
  if (el.tagName === "SELECT") return ([...el.options].find((o) => o.defaultSelected) ?? el.options[0]).value;
  return el.defaultValue;
}

// Applies the address's settings; a value a field cannot take is ignored.
function readUrl() {
  const query = new URLSearchParams(location.search);
  for (const [name, field] of Object.entries(URL_FIELDS)) {
    if (!query.has(name)) continue;
    const el = field();
    const value = query.get(name);
    if (el.type === "checkbox") el.checked = value === "1" || value === "true";
    else if (el.tagName === "SELECT") {
      if ([...el.options].some((o) => o.value === value)) el.value = value;
    } else if (value !== "" && Number.isFinite(Number(value))) el.value = value;
  }
}

function writeUrl() {
  const query = new URLSearchParams(location.search);
  for (const [name, field] of Object.entries(URL_FIELDS)) {
    const el = field();
    if (fieldValue(el) === fieldDefault(el)) query.delete(name);
    else query.set(name, fieldValue(el));
  }
  const search = query.toString();
  history.replaceState(null, "", `${location.pathname}${search ? `?${search}` : ""}${location.hash}`);
}

// ---- sample -----------------------------------------------------------------------------------

async function sample() {
  const steps = Number($("sample-steps").value);
  const count = Number($("sample-count").value);
  const seed = Number($("sample-seed").value) >>> 0;
  const out = $("sample-time");
  $("sample-run").disabled = true;
  out.textContent = `Sampling ${count} digits on the ${engine.kind.toUpperCase()}…`;
  try {
    const started = performance.now();
    const digit = $("sample-digit").value === "" ? undefined : Number($("sample-digit").value);
    const gray = await engine.call("sample", count, seed, { timePoints: TIME_POINTS[steps], digit });
    const ms = performance.now() - started;
    const columns = count > 16 ? 8 : 4;
    drawDigits($("samples"), gray, columns, 3);
    lastSamples = { gray, count, columns, zoom: 3 };
    out.textContent =
      `${count} ${digit === undefined ? "digits" : `${digit}s`} in ${steps} network evaluation${steps > 1 ? "s" : ""} each: ` +
      `${ms.toFixed(0)} ms per batch on the ${engine.kind.toUpperCase()}, seed ${seed}. Click a digit to edit it.`;
    out.dataset.ms = ms.toFixed(1);
    const classes = await bindings.classify_digits(gray);
    $("samples").dataset.classes = Array.from(classes).join("");
  } catch (error) {
    out.textContent = `Sampling failed: ${message(error)}`;
  } finally {
    $("sample-run").disabled = false;
  }
}

// ---- train ------------------------------------------------------------------------------------

function settings() {
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

function trainButtons() {
  const idle = engine !== null && !train.running;
  $("train-run").disabled = !idle;
  $("train-pause").disabled = !train.running;
  for (const id of ["train-reset", "train-download", "train-upload", "train-pretrained", "train-distilled", "engine-choice"]) {
    $(id).disabled = !idle;
  }
  compareButtons();
  $("train-run").textContent = train.losses.length && !train.running ? "Resume" : "Train";
}

let mnistLoaded = false;

async function loadMnist() {
  if (mnistLoaded) return;
  $("mnist-label").hidden = false;
  const bar = $("load-mnist");
  show($("train-status"), "loading", "Downloading the MNIST training digits (about 10 MB)…");
  const [images, labels] = await Promise.all([
    fetchWithProgress("train-images-idx3-ubyte.gz", bar),
    fetchWithProgress("train-labels-idx1-ubyte.gz", { value: 0 }),
  ]);
  const count = await engine.call("set_training_data", images, labels);
  mnistLoaded = true;
  show($("train-status"), "ready", `MNIST loaded: ${count.toLocaleString("en")} training digits.`);
}

// 16 digits from the EMA weights. On a slow adapter a preview can cost as much as several
// training steps, so the next one waits at least five times as long as this one took.
async function preview() {
  const started = performance.now();
  const gray = await engine.call("sample", 16, 0, {});
  drawDigits($("train-samples"), gray, 4, 2);
  if (strip.shown) await showStrip(true);
  train.lastPreview = performance.now();
  train.previewGap = Math.max(PREVIEW_SECONDS * 1000, 5 * (train.lastPreview - started));
}

async function autosave() {
  const bytes = await engine.call("snapshot");
  await saveRun({ bytes, losses: train.losses, savedAt: Date.now() });
  train.lastSave = performance.now();
  return bytes;
}

// How late the page answers: a timer asks for 100 ms and we record how much later it ran. Long
// tasks on the page's thread (what would make clicks and typing lag) show up here.
function watchLag() {
  let expected = performance.now() + 100;
  const tick = () => {
    if (!train.running) return;
    const now = performance.now();
    // Hidden tabs throttle timers on purpose; that is not lag a person could feel.
    if (!document.hidden) train.maxLag = Math.max(train.maxLag, now - expected);
    $("stat-lag").textContent = `${train.maxLag.toFixed(0)} ms`;
    expected = now + 100;
    setTimeout(tick, 100);
  };
  setTimeout(tick, 100);
}

// Steps per call at most: 64, or `?chunk=` in the address (1 gives the loss of every single
// step, to compare runs step by step).
function maxChunk() {
  const asked = Number(new URLSearchParams(location.search).get("chunk"));
  return Number.isInteger(asked) && asked >= 1 ? Math.min(asked, 64) : 64;
}

async function trainLoop() {
  if (train.running) return;
  train.running = true;
  train.maxLag = 0;
  trainButtons();
  const status = $("train-status");
  try {
    await loadMnist();
    let chunk = 1;
    let status0 = await refreshStatus();
    // A run below K stops at K, the end of its curriculum; one already past it (the pretrained
    // run) goes on at its final N until paused.
    const stopAt = status0.step < status0.totalSteps ? status0.totalSteps : Infinity;
    show(status, "ready", "Training…");
    watchLag();
    while (train.running && status0.step < stopAt) {
      chunk = Math.min(chunk, stopAt - status0.step);
      const started = performance.now();
      const loss = await engine.call("train", chunk);
      const seconds = (performance.now() - started) / 1000;
      status0 = await refreshStatus();
      train.losses.push([status0.step, loss]);
      const rate = chunk / seconds;
      $("stat-loss").textContent = loss.toPrecision(4);
      $("stat-rate").textContent = rate.toFixed(2);
      $("stat-images").textContent = (rate * status0.batch).toFixed(0);
      drawLossChart();
      // Aim at about half a second per call: long enough to amortize the readback, short
      // enough for Pause to answer at once.
      chunk = Math.max(1, Math.min(maxChunk(), Math.round(0.5 * rate)));
      const now = performance.now();
      if (now - train.lastPreview > train.previewGap) await preview();
      if (now - train.lastSave > AUTOSAVE_SECONDS * 1000) await autosave();
    }
    await preview();
    await autosave();
    train.running = false;
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
    train.running = false;
    trainButtons();
  }
}

async function resetRun() {
  try {
    await engine.call("restart", settings());
    train.losses = [];
    drawLossChart();
    await refreshStatus();
    await preview();
    await autosave();
    show($("train-status"), "ready", "A fresh run at step 0; press Train.");
  } catch (error) {
    show($("train-status"), "error", message(error));
  }
  trainButtons();
}

async function download() {
  const bytes = await engine.call("snapshot");
  const s = await engine.call("status");
  const link = document.createElement("a");
  link.href = URL.createObjectURL(new Blob([bytes], { type: "application/octet-stream" }));
  link.download = `consistency-${s.widths.join("-")}-step${s.step}.safetensors`;
  link.click();
  setTimeout(() => URL.revokeObjectURL(link.href), 10_000);
}

async function loadRun(bytes, what) {
  try {
    await engine.call("load", bytes);
    train.losses = [];
    drawLossChart();
    const s = await refreshStatus();
    await preview();
    await autosave();
    show($("train-status"), "ready", `Loaded ${what}: step ${s.step}.`);
    await sample();
  } catch (error) {
    show($("train-status"), "error", `${what}: ${message(error)}. Nothing was changed.`);
  }
}

// ---- edit -------------------------------------------------------------------------------------

const edit = {
  source: new Uint8Array(PIXELS),
  mask: new Uint8Array(PIXELS), // 1 = to regenerate (inpainting)
  drawing: false,
};

// The noise level slider: sigma for denoising, the starting t for SDEdit, on a log scale.
function editLevel() {
  const u = Number($("edit-level").value) / 100;
  return Number((0.1 * (T_MAX / 0.1) ** u).toPrecision(3));
}

function editKindChanged() {
  const kind = $("edit-kind").value;
  const level = kind === "denoise" || kind === "sdedit";
  $("edit-level-label").hidden = !level;
  $("edit-level-value").textContent = level ? `t = ${editLevel()}` : "";
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

// ---- engine panel: self-check and benchmark -------------------------------------------------

async function selfCheck() {
  const button = $("selftest-run");
  const checkStatus = $("selftest-status");
  button.disabled = true;
  show(checkStatus, "loading", "Running every kernel on the GPU and on the CPU…");
  const started = performance.now();
  try {
    const results = await bindings.engine_selftest();
    $("selftest-results").querySelector("tbody").replaceChildren(
      ...results.map((r) => {
        const tr = document.createElement("tr");
        for (const text of [r.name, r.error.toExponential(2), r.tolerance.toExponential(0), r.passed ? "ok" : "FAILED"]) {
          const td = document.createElement("td");
          td.textContent = text;
          tr.append(td);
        }
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

// Times training steps and one-step sampling for each network, then puts the user's run back.
async function benchmark() {
  const button = $("bench-run");
  button.disabled = true;
  const rows = $("bench-results").querySelector("tbody");
  rows.replaceChildren();
  $("bench-results").hidden = false;
  const timed = async (call) => {
    const started = performance.now();
    await call();
    return (performance.now() - started) / 1000;
  };
  try {
    const saved = await engine.call("snapshot");
    await loadMnist();
    const batch = settings().batch;
    try {
      for (const widths of $("bench-configs").value.split(",")) {
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
        const ms = (seconds) => (seconds * 1000).toFixed(0);
        const tr = document.createElement("tr");
        tr.dataset.widths = widths;
        tr.dataset.sampleMedianMs = ms(sorted[runs.length >> 1]);
        tr.dataset.sampleMinMs = ms(sorted[0]);
        tr.dataset.stepSeconds = (seconds / steps).toFixed(4);
        const sampling = `${ms(sorted[runs.length >> 1])} ms (fastest ${ms(sorted[0])}, ${runs.length} runs)`;
        for (const text of [widths, batch, (steps / seconds).toFixed(2), ((steps * batch) / seconds).toPrecision(2), sampling]) {
          const td = document.createElement("td");
          td.textContent = text;
          tr.append(td);
        }
        rows.append(tr);
      }
    } finally {
      await engine.call("load", saved);
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

// ---- start ------------------------------------------------------------------------------------

function describeAdapter(info) {
  const fill = (id, value) => ($(id).textContent = value || "—");
  fill("adapter-name", info.name);
  fill("adapter-backend", info.backend);
  fill("adapter-device-type", info.device_type);
  fill("adapter-driver", info.driver);
  $("adapter").hidden = false;
}

// ---- choosing the backend --------------------------------------------------------------------

const ENGINE_KEY = "consistency.engine";
const ENGINE_CHOICES = ["auto", "gpu", "cpu"];

// What the person asked for: `?engine=` in the address, else their last choice, else automatic.
function engineChoice() {
  const asked = new URLSearchParams(location.search).get("engine");
  if (ENGINE_CHOICES.includes(asked)) return asked;
  const saved = localStorage.getItem(ENGINE_KEY);
  return ENGINE_CHOICES.includes(saved) ? saved : "auto";
}

// CPU workers: `?workers=` in the address (to compare), else one per core up to four.
function workerCount() {
  const asked = Number(new URLSearchParams(location.search).get("workers"));
  return Number.isInteger(asked) && asked >= 1 ? Math.min(asked, 16) : defaultWorkers();
}

// Opens the engine `choice` asks for with the run in `checkpoint`. Automatic takes WebGPU on a
// hardware adapter and the CPU otherwise. Resolves to { engine, state, reason }: the reason is
// what the page shows. The GPU device opened only to look at the adapter is released.
async function openEngine(choice, checkpoint) {
  let studio = null;
  let gpuError = null;
  let info = null;
  if (choice !== "cpu") {
    try {
      studio = await bindings.Studio.open(false, checkpoint);
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
    return { engine: new LocalEngine(studio), state: info.is_fallback ? "warning" : "ready", reason };
  }
  studio?.free();
  const workers = workerCount();
  const engine = await CpuEngine.open(checkpoint, workers);
  const cpu = `the CPU: WebAssembly SIMD in ${workers} worker${workers > 1 ? "s" : ""}`;
  if (choice === "cpu") return { engine, state: "ready", reason: `Running on ${cpu}, as you chose.` };
  if (studio) {
    return {
      engine,
      state: "ready",
      reason: `Running on ${cpu}. This browser's WebGPU adapter${named} is a software fallback, which computes about a hundred times slower than plain WebAssembly; choose WebGPU in the Engine panel to compare.`,
    };
  }
  return { engine, state: "warning", reason: `Running on ${cpu}, because WebGPU is not available: ${gpuError}` };
}

function showEngine(opened) {
  engine = opened.engine;
  show($("status"), opened.state, opened.reason);
  $("engine-reason").textContent = opened.reason;
  document.body.dataset.engine = engine.kind;
}

// The Engine panel's backend control: remembers the choice and moves the run (its whole state,
// through a checkpoint) to the new backend.
async function switchEngine() {
  const choice = $("engine-choice").value;
  localStorage.setItem(ENGINE_KEY, choice);
  const status = $("status");
  const old = engine;
  engine = null;
  trainButtons();
  try {
    show(status, "loading", "Moving the run to the other backend…");
    const bytes = await old.call("snapshot");
    old.close();
    mnistLoaded = false;
    showEngine(await openEngine(choice, bytes));
    await refreshStatus();
    await sample();
  } catch (error) {
    if (!engine) engine = old;
    show(status, "error", `Could not switch the backend: ${message(error)}`);
  }
  trainButtons();
}

async function start() {
  bindings = window.wasmBindings;
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
  } catch (error) {
    show(status, "error", `The engine did not start: ${message(error)}`);
    return;
  }
  $("bench-run").disabled = false;
  if (saved) {
    try {
      await engine.call("load", saved.bytes);
      train.losses = saved.losses ?? [];
      const when = new Date(saved.savedAt).toLocaleString();
      show($("train-status"), "ready", `Restored your run from this browser (saved ${when}). "Pretrained model" goes back to the shipped one.`);
    } catch (error) {
      show($("train-status"), "error", `Your saved run could not be restored (${message(error)}); starting from the pretrained model.`);
    }
  }
  drawLossChart();
  await refreshStatus();
  for (const id of ["sample-run", "sample-next", "edit-run", "strip-run", "trace-run"]) $(id).disabled = false;
  trainButtons();
  await sample();
  document.body.dataset.ready = "true";
}

function wire() {
  readUrl();
  for (const field of Object.values(URL_FIELDS)) field().addEventListener("change", writeUrl);
  $("sample-run").addEventListener("click", sample);
  $("sample-next").addEventListener("click", () => {
    $("sample-seed").value = (Number($("sample-seed").value) + 1) >>> 0;
    writeUrl();
    sample();
  });
  $("strip-run").addEventListener("click", () => showStrip());
  $("trace-run").addEventListener("click", stepThrough);
  $("samples").addEventListener("click", pickSample);
  $("train-run").addEventListener("click", trainLoop);
  $("train-pause").addEventListener("click", () => {
    train.running = false;
    $("train-pause").disabled = true;
  });
  $("train-reset").addEventListener("click", resetRun);
  $("train-download").addEventListener("click", download);
  $("train-upload").addEventListener("change", async (event) => {
    const file = event.target.files[0];
    if (file) await loadRun(new Uint8Array(await file.arrayBuffer()), file.name);
    event.target.value = "";
  });
  $("train-pretrained").addEventListener("click", async () => {
    await forgetRun();
    await loadRun(await fetchWithProgress(PRETRAINED, $("load-model")), "the pretrained model");
  });
  $("train-distilled").addEventListener("click", loadDistilled);
  $("compare-load").addEventListener("click", loadDistilled);
  $("compare-run").addEventListener("click", compare);
  $("sample-digit").addEventListener("change", sample);
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
  $("selftest-run").addEventListener("click", selfCheck);
  $("bench-run").addEventListener("click", benchmark);
  $("engine-choice").addEventListener("change", switchEngine);
  editKindChanged();
}

wire();
// Trunk's loader sets window.wasmBindings and then fires TrunkApplicationStarted; either may
// already have happened by the time this module runs.
if (window.wasmBindings) start();
else addEventListener("TrunkApplicationStarted", start, { once: true });
