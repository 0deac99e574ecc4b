#!/usr/bin/env node
// One-step sampling of our network in onnxruntime-web, in headless Debian Chromium: times
// session.run + getData() of f(x, sigma = 80) for a batch, prints one JSON line.
// Usage: node run.mjs --backend wasm|webgpu [--model small] [--batch 64] [--threads 2]
//        [--runs 10] [--warmup 2] [--budget-s 120] [--modules DIR] [--chrome-arg ARG]...
// Needs: bench/install (npm packages in bench/node_modules, or --modules) and
// models/cm_<model>.onnx, which scripts/bench-page exports from the PyTorch twin
// (bench/twin.py export-onnx) with the weights of assets/consistency-<model>.safetensors.
import { createRequire } from 'node:module';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const o = { backend: 'wasm', model: 'small', batch: 64, threads: 2, runs: 10, warmup: 2, budgetS: 120,
  modules: path.join(HERE, '..', 'node_modules'), chromeArgs: [], chromium: '/usr/bin/chromium' };
for (let i = 2; i < process.argv.length; i++) {
  const a = process.argv[i], v = () => process.argv[++i];
  if (a === '--backend') o.backend = v(); else if (a === '--model') o.model = v();
  else if (a === '--batch') o.batch = +v(); else if (a === '--threads') o.threads = +v();
  else if (a === '--runs') o.runs = +v(); else if (a === '--warmup') o.warmup = +v();
  else if (a === '--budget-s') o.budgetS = +v(); else if (a === '--modules') o.modules = v();
  else if (a === '--chrome-arg') o.chromeArgs.push(v()); else throw new Error('unknown argument ' + a);
}
const roots = { lib: path.join(o.modules, 'onnxruntime-web/dist'), models: path.join(HERE, 'models') };
if (!fs.existsSync(path.join(roots.models, `cm_${o.model}.onnx`))) {
  process.stdout.write(JSON.stringify({ backend: o.backend, model: o.model, error: `no models/cm_${o.model}.onnx: run scripts/bench-page, or bench/twin.py export-onnx` }) + '\n');
  process.exit(1);
}
const types = { '.html': 'text/html', '.mjs': 'text/javascript', '.js': 'text/javascript', '.wasm': 'application/wasm' };
// Cross-origin isolation (COOP/COEP) is what lets ORT's wasm backend use threads.
const server = http.createServer((req, res) => {
  const u = decodeURIComponent(new URL(req.url, 'http://x').pathname).replace(/^\/+/, '');
  const [head, ...rest] = u.split('/');
  const file = roots[head] ? path.join(roots[head], ...rest) : path.join(HERE, u || 'bench.html');
  fs.readFile(file, (err, data) => {
    if (err) { res.writeHead(404); res.end(); return; }
    res.writeHead(200, { 'Content-Type': types[path.extname(file)] || 'application/octet-stream',
      'Cross-Origin-Opener-Policy': 'same-origin', 'Cross-Origin-Embedder-Policy': 'require-corp' });
    res.end(data);
  });
});
await new Promise((r) => server.listen(0, '127.0.0.1', r));
const require = createRequire(path.join(o.modules, '..', 'package.json'));
const { chromium } = require('playwright-core');
const browser = await chromium.launch({ executablePath: o.chromium, headless: true,
  args: ['--no-sandbox', '--enable-unsafe-webgpu', '--no-first-run', '--disable-background-networking', ...o.chromeArgs] });
const load0 = os.loadavg()[0];
let result;
try {
  const page = await browser.newPage();
  page.on('pageerror', (e) => process.stderr.write(`[pageerror] ${e.message}\n`));
  page.on('console', (m) => { if (m.type() === 'error') process.stderr.write(`[page] ${m.text()}\n`); });
  await page.goto(`http://127.0.0.1:${server.address().port}/bench.html`);
  await page.waitForFunction(() => window.benchReady === true);
  result = await page.evaluate((op) => window.runBench(op), o);
  result.chromium = browser.version();
} catch (e) {
  result = { backend: o.backend, model: o.model, error: String(e.message || e).split('\n')[0] };
}
result.loadavg1 = [+load0.toFixed(2), +os.loadavg()[0].toFixed(2)];
await browser.close();
server.close();
process.stdout.write(JSON.stringify(result) + '\n');
