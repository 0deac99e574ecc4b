// The comparison panel: the run's diffusion teacher integrating its ODE against the
// consistency model's one step, from the same noise, with the time each took.

import { $, intField, message, page } from "./page.js";
import { drawDigits } from "./draw.js";
import { chosenDigit } from "./sample.js";

export function compareButtons() {
  const ready = page.engine !== null && !page.training;
  const hasTeacher = page.status?.hasTeacher ?? false;
  $("compare-run").disabled = !ready || !hasTeacher || page.status.objective === "denoising";
  $("compare-load").disabled = !ready;
  $("compare-load").hidden = hasTeacher;
}

export async function compare() {
  const { engine, bindings, status: run } = page;
  const solver = $("compare-solver").value;
  const steps = intField("compare-steps", 1, 80);
  const seed = Number($("compare-seed").value) >>> 0;
  const digit = chosenDigit();
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
    const evaluations = bindings.evaluations(solver, steps);
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
