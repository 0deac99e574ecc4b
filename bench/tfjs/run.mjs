#!/usr/bin/env node
// Runs the TensorFlow.js consistency-training benchmark page (bench.js) in headless Chromium
// and prints one JSON line.
// Usage: node run.mjs --config small|base --batch 64 --backend webgpu|webgl|wasm|cpu
//        [--steps 10] [--warmup 3] [--min-steps 1] [--budget-s 270] [--sample-runs 5 (0 = skip)] [--sample-warmup 1]
//        [--sample-budget-s 30] [--timeout-s 330]
//        [--data random|mnist] [--mnist-dir DIR (uncompressed IDX)] [--no-fused] [--no-sample-ema]
//        [--modules DIR (default bench/node_modules)] [--chrome-arg ARG]... [--verbose]
// Needs: bench/install (npm packages in bench/node_modules).
import { spawn } from 'node:child_process';
import { createRequire } from 'node:module';
import fs from 'node:fs';
import net from 'node:net';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));

function parseArgs(argv) {
  const o = {
    config: 'small', batch: 64, backend: 'webgpu', steps: 10, warmup: 3, minSteps: 1,
    budgetS: 270, sampleRuns: 5, sampleWarmup: 1, sampleBudgetS: 30, data: 'random', fused: true, sampleEma: true,
    modules: path.join(HERE, '..', 'node_modules'), mnistDir: null,
    chromeArgs: [], verbose: false, chromium: '/usr/bin/chromium', timeoutS: 330,
  };
  for (let i = 2; i < argv.length; i++) {
    const a = argv[i], v = () => argv[++i];
    switch (a) {
      case '--config': o.config = v(); break;
      case '--batch': o.batch = +v(); break;
      case '--backend': o.backend = v(); break;
      case '--steps': o.steps = +v(); break;
      case '--warmup': o.warmup = +v(); break;
      case '--min-steps': o.minSteps = +v(); break;
      case '--budget-s': o.budgetS = +v(); break;
      case '--sample-runs': o.sampleRuns = +v(); break;
      case '--sample-budget-s': o.sampleBudgetS = +v(); break;
      case '--sample-warmup': o.sampleWarmup = +v(); break;
      case '--data': o.data = v(); break;
      case '--no-fused': o.fused = false; break;
      case '--no-sample-ema': o.sampleEma = false; break;
      case '--modules': o.modules = v(); break;
      case '--mnist-dir': o.mnistDir = v(); break;
      case '--chrome-arg': o.chromeArgs.push(v()); break;
      case '--chromium': o.chromium = v(); break;
      case '--timeout-s': o.timeoutS = +v(); break;
      case '--verbose': o.verbose = true; break;
      default: throw new Error('unknown argument ' + a);
    }
  }
  if (o.data === 'mnist' && !(o.mnistDir && fs.existsSync(path.join(o.mnistDir, 'train-images-idx3-ubyte')))) {
    process.stderr.write(`MNIST not found in ${o.mnistDir}; using random data\n`);
    o.data = 'random';
  }
  return o;
}

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => { const p = s.address().port; s.close(() => resolve(p)); });
  });
}

function waitHttp(url, ms) {
  const until = Date.now() + ms;
  return new Promise((resolve, reject) => {
    const tryOnce = () => {
      const req = http.get(url, (res) => { res.resume(); resolve(); });
      req.on('error', () => {
        if (Date.now() > until) reject(new Error('server did not come up at ' + url));
        else setTimeout(tryOnce, 100);
      });
    };
    tryOnce();
  });
}

function pkgVersion(modules, name) {
  try { return JSON.parse(fs.readFileSync(path.join(modules, name, 'package.json'), 'utf8')).version; }
  catch { return null; }
}

async function main() {
  const o = parseArgs(process.argv);
  const require = createRequire(path.join(o.modules, '..', 'package.json'));
  const { chromium } = require('playwright-core');

  // Serve dir: symlinks to the page, the libraries (bench/node_modules) and MNIST.
  const serveDir = fs.mkdtempSync(path.join(os.tmpdir(), 'tfjs-bench-'));
  fs.symlinkSync(path.join(HERE, 'bench.html'), path.join(serveDir, 'bench.html'));
  fs.symlinkSync(path.join(HERE, 'bench.js'), path.join(serveDir, 'bench.js'));
  fs.symlinkSync(o.modules, path.join(serveDir, 'lib'));
  if (o.data === 'mnist') fs.symlinkSync(o.mnistDir, path.join(serveDir, 'mnist'));

  const port = await freePort();
  const server = spawn('python3', ['-m', 'http.server', String(port), '--bind', '127.0.0.1'],
    { cwd: serveDir, stdio: ['ignore', 'ignore', o.verbose ? 'inherit' : 'ignore'] });
  let browser = null;
  let partial = null; // latest '[progress]' object from the page
  let done = false;
  const load0 = os.loadavg()[0];
  const wall0 = Date.now();
  const cleanup = () => {
    if (server.exitCode === null && server.pid) { try { process.kill(server.pid, 'SIGTERM'); } catch {} }
    try { fs.rmSync(serveDir, { recursive: true, force: true }); } catch {}
  };
  const decorate = (r) => {
    r.chromium = browser ? browser.version() : null;
    r.chrome_args_extra = o.chromeArgs;
    r.loadavg1_start = +load0.toFixed(2);
    r.loadavg1_end = +os.loadavg()[0].toFixed(2);
    r.run_wall_s = +((Date.now() - wall0) / 1000).toFixed(1);
    r.versions = Object.fromEntries(['@tensorflow/tfjs', '@tensorflow/tfjs-core',
      '@tensorflow/tfjs-backend-webgpu', '@tensorflow/tfjs-backend-webgl', '@tensorflow/tfjs-backend-wasm',
      '@tensorflow/tfjs-backend-cpu', 'playwright-core'].map((n) => [n, pkgVersion(o.modules, n)]));
    return r;
  };
  const finish = async (r, code) => {
    if (done) return;
    done = true;
    clearTimeout(killTimer);
    try { r.chromium = browser ? browser.version() : null; } catch {}
    decorate(r);
    try { if (browser) await browser.close(); } catch {}
    cleanup();
    process.stdout.write(JSON.stringify(r) + '\n');
    process.exit(code);
  };
  const killTimer = setTimeout(() => {
    process.stderr.write(`timeout after ${o.timeoutS}s; printing partial results\n`);
    const r = partial ? { ...partial } : { backend: o.backend, config: o.config, batch: o.batch };
    r.timed_out = true;
    r.error = `timeout after ${o.timeoutS}s`;
    finish(r, 124);
  }, o.timeoutS * 1000);

  try {
    const base = `http://127.0.0.1:${port}`;
    await waitHttp(base + '/bench.html', 10000);
    browser = await chromium.launch({
      executablePath: o.chromium, headless: true,
      args: ['--no-sandbox', '--enable-unsafe-webgpu', '--disable-quic', '--no-first-run',
        '--disable-background-networking', '--disable-component-update', '--disable-sync', ...o.chromeArgs],
    });
    const page = await browser.newPage();
    page.on('console', (m) => {
      const t = m.text();
      if (t.startsWith('[progress] ')) { try { partial = JSON.parse(t.slice(11)); } catch {} return; }
      if (o.verbose || m.type() === 'error') process.stderr.write(`[page:${m.type()}] ${t}\n`);
    });
    page.on('pageerror', (e) => process.stderr.write(`[pageerror] ${e.message}\n`));
    await page.goto(base + '/bench.html', { waitUntil: 'load' });
    const pageOpts = {
      backend: o.backend, config: o.config, batch: o.batch, steps: o.steps, warmup: o.warmup,
      minSteps: o.minSteps, budgetS: o.budgetS, sampleRuns: o.sampleRuns, sampleWarmup: o.sampleWarmup,
      sampleBudgetS: o.sampleBudgetS, data: o.data, fused: o.fused, sampleEma: o.sampleEma,
    };
    const result = await page.evaluate((op) => window.runBench(op), pageOpts);
    await finish(result, 0);
  } catch (e) {
    if (done) return;
    const r = partial ? { ...partial } : { backend: o.backend, config: o.config, batch: o.batch };
    r.error = String(e && e.message || e).split('\n')[0];
    await finish(r, 1);
  }
}

main().catch((e) => { process.stderr.write(String(e && e.stack || e) + '\n'); process.exit(2); });
