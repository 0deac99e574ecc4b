// The short soak (tests/web/soak.mjs; the 30-minute one is scripts/soak): a minute of training
// on the CPU path with the memory read at 20 s and at the end, the page's input delay, and the
// autosaved run restored after a reload.

import { test } from "node:test";
import assert from "node:assert/strict";
import { servedSite } from "./browser.mjs";
import { soak, soakFailures } from "./soak.mjs";

const site = servedSite();

test("a minute of training keeps memory flat, the page responsive, and the run across a reload", { timeout: 900_000 }, async () => {
  const result = await soak(site.origin, 1, 1 / 3);
  console.log(`soak: ${JSON.stringify(result)}`);
  assert.deepEqual(soakFailures(result), []);
});
