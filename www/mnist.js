// MNIST's training digits, downloaded once per engine when a panel first needs them (training,
// the noise strip, the benchmark) and handed to the engine.

import { $, fetchWithProgress, page, show } from "./page.js";

let loaded = false;

export async function loadMnist() {
  if (loaded) return;
  $("mnist-label").hidden = false;
  const bar = $("load-mnist");
  show($("train-status"), "loading", "Downloading the MNIST training digits (about 10 MB)…");
  const [images, labels] = await Promise.all([
    fetchWithProgress("train-images-idx3-ubyte.gz", bar),
    fetchWithProgress("train-labels-idx1-ubyte.gz", { value: 0 }),
  ]);
  const count = await page.engine.call("set_training_data", images, labels);
  loaded = true;
  show($("train-status"), "ready", `MNIST loaded: ${count.toLocaleString("en")} training digits.`);
}

// A new engine has none of the digits the last one had.
export function forgetMnist() {
  loaded = false;
}
