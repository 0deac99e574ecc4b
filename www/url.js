// The page's address. Every setting a person changes is mirrored into the query string, so that
// a link reproduces what they see: the training settings, the sampling steps, count, digit and
// seed, and the views' digit and seeds. Values equal to the page's defaults are left out. A few
// parameters are read only, to compare engines: `?engine=`, `?workers=` and `?chunk=`.

import { $ } from "./page.js";

const FIELDS = {
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
  for (const [name, field] of Object.entries(FIELDS)) {
    if (!query.has(name)) continue;
    const el = field();
    const value = query.get(name);
    if (el.type === "checkbox") el.checked = value === "1" || value === "true";
    else if (el.tagName === "SELECT") {
      if ([...el.options].some((o) => o.value === value)) el.value = value;
    } else if (value !== "" && Number.isFinite(Number(value))) el.value = value;
  }
}

export function writeUrl() {
  const query = new URLSearchParams(location.search);
  for (const [name, field] of Object.entries(FIELDS)) {
    const el = field();
    if (fieldValue(el) === fieldDefault(el)) query.delete(name);
    else query.set(name, fieldValue(el));
  }
  const search = query.toString();
  history.replaceState(null, "", `${location.pathname}${search ? `?${search}` : ""}${location.hash}`);
}

// Fills the fields from the address, then keeps the address in step with them.
export function wireUrl() {
  readUrl();
  for (const field of Object.values(FIELDS)) field().addEventListener("change", writeUrl);
}

const asked = (name) => new URLSearchParams(location.search).get(name);

// `?engine=auto|gpu|cpu`, or null.
export function askedEngine(choices) {
  return choices.includes(asked("engine")) ? asked("engine") : null;
}

// A whole number from 1 to `max` in `?name=`, or null.
function askedCount(name, max) {
  const n = Number(asked(name));
  return Number.isInteger(n) && n >= 1 ? Math.min(n, max) : null;
}

// `?workers=N`: CPU workers, to compare counts.
export const askedWorkers = () => askedCount("workers", 16);

// `?chunk=N`: training steps per call at most (1 gives the loss of every single step).
export const askedChunk = () => askedCount("chunk", 64);
