// The schedule panel: N(k), mu(k) and the time grid of the loaded run, redrawn with its status.

import { $, page } from "./page.js";
import { drawScheduleChart } from "./draw.js";

export async function showSchedule() {
  const view = await page.engine.call("schedule");
  const canvas = $("schedule");
  canvas.dataset.step = String(view.step);
  canvas.dataset.grid = String(view.grid.length);
  drawScheduleChart(canvas, view, page.constants);
}
