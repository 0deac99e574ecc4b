// The run's read-outs: step, N(k), mu(k), what the run is, and the controls that depend on it
// (the digit of a class-conditional model, the comparison with a teacher, the schedule).

import { $, page } from "./page.js";
import { compareButtons } from "./compare.js";
import { showSchedule } from "./schedule.js";

export async function refreshStatus() {
  const s = await page.engine.call("status");
  page.status = s;
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
  compareButtons();
  await showSchedule();
  return s;
}
