// Drawing on canvases: digits (28x28 gray levels) in grids or one large, and the charts (the
// training loss, the live legibility readout, the schedule of a run).

import { PIXELS, SIDE } from "./page.js";

// Draws 28x28 gray digits in a grid (2-pixel gaps, each pixel a zoom x zoom square).
export function drawDigits(canvas, gray, columns, zoom) {
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
export function drawDigit(canvas, gray, mask = null) {
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

// The loss curve of `losses` ([step, loss] pairs) on a log axis.
export function drawLossChart(canvas, losses) {
  const { ctx, width, height } = blankChart(canvas);
  const points = losses.filter(([, loss]) => loss > 0);
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

// The live readout's readings (Studio.readouts): the share read as a digit with p >= 0.9 over
// the steps (0-100%), and the last reading's ten digit shares as bars, the 6-14% band shaded.
export function drawReadoutChart(canvas, readouts) {
  const { ctx, width, height } = blankChart(canvas);
  if (readouts.length === 0) {
    ctx.fillText("legible digits (%) appear here while training", 12, height / 2);
    return;
  }
  const pad = { left: 36, right: 8, top: 8, bottom: 22 };
  const bars = { width: 10 * 9, gap: 16 };
  const right = width - pad.right - bars.width - bars.gap;
  const steps = readouts.map((r) => r.step);
  const [x0, x1] = [Math.min(...steps), Math.max(...steps)];
  const px = (s) => pad.left + ((s - x0) / Math.max(1, x1 - x0)) * (right - pad.left);
  const py = (share) => pad.top + (1 - share) * (height - pad.top - pad.bottom);
  ctx.strokeStyle = "rgba(128,128,128,0.35)";
  ctx.beginPath();
  for (const share of [0, 0.5, 1]) {
    ctx.moveTo(pad.left, py(share));
    ctx.lineTo(right, py(share));
    ctx.fillText(`${100 * share}%`, 2, py(share) + 4);
  }
  ctx.stroke();
  ctx.fillText(`step ${x0}`, pad.left, height - 6);
  ctx.fillText(`${x1}`, right - 30, height - 6);
  ctx.strokeStyle = ctx.fillStyle = "#16a34a";
  ctx.lineWidth = 1.5;
  ctx.beginPath();
  readouts.forEach((r, i) => (i ? ctx.lineTo(px(r.step), py(r.legible)) : ctx.moveTo(px(r.step), py(r.legible))));
  ctx.stroke();
  for (const r of readouts) ctx.fillRect(px(r.step) - 2, py(r.legible) - 2, 4, 4);
  ctx.lineWidth = 1;
  // Each digit's share of the last reading, on a 0-20% axis.
  const left = width - pad.right - bars.width;
  const by = (percent) => pad.top + (1 - Math.min(percent, 20) / 20) * (height - pad.top - pad.bottom);
  ctx.fillStyle = "rgba(128,128,128,0.18)";
  ctx.fillRect(left, by(14), bars.width, by(6) - by(14));
  readouts.at(-1).shares.forEach((share, digit) => {
    ctx.fillStyle = share < 6 || share > 14 ? "#dc2626" : "#3b82f6";
    ctx.fillRect(left + digit * 9 + 1, by(share), 7, by(0) - by(share));
  });
  ctx.fillStyle = getComputedStyle(document.body).color;
  ctx.fillText("0 … 9", left + 28, height - 6);
}

// The schedule view `v` (Studio.schedule): N(k) (blue, left axis) and mu(k) (orange, right
// axis) over the curriculum, the current step marked, and the time grid at that step as ticks
// on a log axis of t from `eps` to `T`.
export function drawScheduleChart(canvas, v, { eps, T }) {
  const { ctx, width, height, style } = blankChart(canvas);
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
  const pt = (t) => pad.left + (Math.log(t / eps) / Math.log(T / eps)) * (width - pad.left - pad.right);
  ctx.strokeStyle = style.color;
  ctx.beginPath();
  ctx.moveTo(pt(eps), axis);
  ctx.lineTo(pt(T), axis);
  for (const t of v.grid) {
    ctx.moveTo(pt(t), axis - 6);
    ctx.lineTo(pt(t), axis + 6);
  }
  ctx.stroke();
  ctx.fillText(`t = ${eps}`, pad.left, height - 6);
  ctx.fillText(`${T}`, width - pad.right - 12, height - 6);
  ctx.fillText(
    v.grid.length ? `the time grid at step ${v.step}: N = ${v.grid.length} points` : "this recipe has no time grid",
    width / 2 - 90,
    height - 6,
  );
}
