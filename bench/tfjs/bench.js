// Consistency-training (CT) benchmark of our U-Net (src/nn/unet.rs: the same layers, random weights) in TensorFlow.js.
// Loaded by bench.html after tf.min.js (+ webgpu / wasm backend bundles); exposes window.runBench(opts).
'use strict';
(function () {
  const SIGMA_DATA = 0.5, EPS = 0.002, T_MAX = 80, RHO = 7;
  const S0 = 2, S1 = 150, MU0 = 0.9;
  const CONFIGS = { small: [16, 32, 32], base: [32, 64, 64] };
  const GROUPS = 8;

  function log(msg) {
    console.log('[bench] ' + msg);
    const el = document.getElementById('log');
    if (el) el.textContent += msg + '\n';
  }

  // Small deterministic PRNG (xorshift32) for batch indices and noise levels.
  function makeRng(seed) {
    let s = (seed >>> 0) || 0x9e3779b9;
    return function () {
      s ^= s << 13; s >>>= 0;
      s ^= s >>> 17;
      s ^= s << 5; s >>>= 0;
      return s / 4294967296;
    };
  }

  // ---------------------------------------------------------------- parameters
  // Returns a list of [name, shape, init, fanIn] in a fixed order.
  function paramSpec(C) {
    const [c0, c1, c2] = C;
    const tdim = 4 * c0;
    const out = [];
    const linear = (n, i, o) => { out.push([n + '.w', [i, o], 'u', i]); out.push([n + '.b', [o], 'u', i]); };
    const conv = (n, i, o, k = 3) => {
      out.push([n + '.w', [k, k, i, o], 'u', i * k * k]);
      out.push([n + '.b', [o], 'u', i * k * k]);
    };
    const gnorm = (n, c) => { out.push([n + '.g', [c], 'one', 0]); out.push([n + '.b', [c], 'zero', 0]); };
    const resblock = (n, i, o) => {
      gnorm(n + '.gn1', i); conv(n + '.conv1', i, o); linear(n + '.temb', tdim, o);
      gnorm(n + '.gn2', o); conv(n + '.conv2', o, o);
      if (i !== o) conv(n + '.skip', i, o, 1);
    };
    linear('temb1', 2 * c0, tdim); linear('temb2', tdim, tdim);
    conv('stem', 1, c0);
    resblock('enc28', c0, c0); conv('down28', c0, c0);
    resblock('enc14', c0, c1); conv('down14', c1, c1);
    resblock('enc7', c1, c2);
    resblock('mid', c2, c2);
    resblock('dec7', c2 + c2, c2); conv('up7', c2, c2);
    resblock('dec14', c2 + c1, c1); conv('up14', c1, c1);
    resblock('dec28', c1 + c0, c0);
    gnorm('head.gn', c0); conv('head.conv', c0, 1);
    return out;
  }

  // PyTorch-like default init: U(-1/sqrt(fan_in), 1/sqrt(fan_in)); GroupNorm gamma=1, beta=0.
  function initTensor(shape, kind, fanIn) {
    if (kind === 'one') return tf.ones(shape);
    if (kind === 'zero') return tf.zeros(shape);
    const b = 1 / Math.sqrt(fanIn);
    return tf.randomUniform(shape, -b, b);
  }

  // ---------------------------------------------------------------- network F
  function makeNet(C, useFused) {
    const c0 = C[0];
    const half = c0; // sinusoidal embedding dim 2*C0 = cos(half) ++ sin(half)
    const freqArr = new Float32Array(half);
    for (let i = 0; i < half; i++) freqArr[i] = Math.exp(-Math.log(10000) * i / half);
    const freqs = tf.tensor2d(freqArr, [1, half]);

    const silu = (x) => tf.mul(x, tf.sigmoid(x));
    const linear = (P, n, x) => useFused
      ? tf.fused.matMul({ a: x, b: P[n + '.w'], bias: P[n + '.b'] })
      : tf.add(tf.matMul(x, P[n + '.w']), P[n + '.b']);
    const conv = (P, n, x, stride = 1) => useFused
      ? tf.fused.conv2d({ x, filter: P[n + '.w'], strides: stride, pad: 'same', bias: P[n + '.b'] })
      : tf.add(tf.conv2d(x, P[n + '.w'], stride, 'same'), P[n + '.b']);
    // GroupNorm(8) via reshape + moments (biased variance, eps 1e-5, per-channel affine).
    const groupnorm = (P, n, x) => {
      const [B, H, W, Ch] = x.shape;
      const xr = tf.reshape(x, [B, H * W, GROUPS, Ch / GROUPS]);
      const { mean, variance } = tf.moments(xr, [1, 3], true);
      const xn = tf.mul(tf.sub(xr, mean), tf.rsqrt(tf.add(variance, 1e-5)));
      return tf.add(tf.mul(tf.reshape(xn, [B, H, W, Ch]), P[n + '.g']), P[n + '.b']);
    };
    const resblock = (P, n, x, temb) => {
      const cout = P[n + '.conv1.w'].shape[3];
      let h = conv(P, n + '.conv1', silu(groupnorm(P, n + '.gn1', x)));
      const t = linear(P, n + '.temb', temb); // [B, cout]
      h = tf.add(h, tf.reshape(t, [t.shape[0], 1, 1, cout]));
      h = conv(P, n + '.conv2', silu(groupnorm(P, n + '.gn2', h)));
      const skip = (P[n + '.skip.w'] !== undefined) ? conv(P, n + '.skip', x) : x;
      return tf.add(h, skip);
    };
    const upsample = (x) => tf.image.resizeNearestNeighbor(x, [x.shape[1] * 2, x.shape[2] * 2]);

    // x: [B,28,28,1] (already multiplied by c_in), cnoise: [B]
    function F(P, x, cnoise) {
      const B = x.shape[0];
      const args = tf.mul(tf.reshape(tf.mul(cnoise, 1000), [B, 1]), freqs);
      let temb = tf.concat([tf.cos(args), tf.sin(args)], 1);        // [B, 2*C0]
      temb = linear(P, 'temb2', silu(linear(P, 'temb1', temb)));      // [B, 4*C0]

      let h = conv(P, 'stem', x);
      const e28 = resblock(P, 'enc28', h, temb);
      h = conv(P, 'down28', e28, 2);
      const e14 = resblock(P, 'enc14', h, temb);
      h = conv(P, 'down14', e14, 2);
      const e7 = resblock(P, 'enc7', h, temb);
      h = resblock(P, 'mid', e7, temb);
      h = resblock(P, 'dec7', tf.concat([h, e7], 3), temb);
      h = conv(P, 'up7', upsample(h));
      h = resblock(P, 'dec14', tf.concat([h, e14], 3), temb);
      h = conv(P, 'up14', upsample(h));
      h = resblock(P, 'dec28', tf.concat([h, e28], 3), temb);
      return conv(P, 'head.conv', silu(groupnorm(P, 'head.gn', h)));
    }
    return { F, freqs };
  }

  // ---------------------------------------------------------------- CT pieces
  function scalings(sigma) { // sigma: Float32Array -> per-sample coefficient arrays
    const n = sigma.length, sd2 = SIGMA_DATA * SIGMA_DATA;
    const cskip = new Float32Array(n), cout = new Float32Array(n), cin = new Float32Array(n), cnoise = new Float32Array(n);
    for (let i = 0; i < n; i++) {
      const s = sigma[i];
      cskip[i] = sd2 / ((s - EPS) * (s - EPS) + sd2);
      cout[i] = SIGMA_DATA * (s - EPS) / Math.sqrt(sd2 + s * s);
      cin[i] = 1 / Math.sqrt(s * s + sd2);
      cnoise[i] = 0.25 * Math.log(s);
    }
    return { cskip, cout, cin, cnoise };
  }
  const col = (a) => tf.tensor4d(a, [a.length, 1, 1, 1]);

  // f(x, s) = c_skip(s) x + c_out(s) F(c_in(s) x, c_noise(s))
  function consistencyFn(net, P, x, sigma) {
    const c = scalings(sigma);
    const Fx = net.F(P, tf.mul(x, col(c.cin)), tf.tensor1d(c.cnoise));
    return tf.add(tf.mul(x, col(c.cskip)), tf.mul(Fx, col(c.cout)));
  }

  function Nk(k, K) {
    return Math.ceil(Math.sqrt(k / K * ((S1 + 1) * (S1 + 1) - S0 * S0) + S0 * S0) - 1) + 1;
  }
  function muK(N) { return Math.exp(S0 * Math.log(MU0) / N); }
  function tI(i, N) { // i in 1..N
    const a = Math.pow(EPS, 1 / RHO), b = Math.pow(T_MAX, 1 / RHO);
    return Math.pow(a + (i - 1) / (N - 1) * (b - a), RHO);
  }

  // ---------------------------------------------------------------- data
  async function loadMnist() {
    const r = await fetch('mnist/train-images-idx3-ubyte');
    if (!r.ok) throw new Error('MNIST fetch failed: ' + r.status);
    const buf = new Uint8Array(await r.arrayBuffer());
    const dv = new DataView(buf.buffer);
    const magic = dv.getUint32(0), n = dv.getUint32(4), rows = dv.getUint32(8), cols = dv.getUint32(12);
    if (magic !== 2051 || rows !== 28 || cols !== 28) throw new Error('bad IDX header');
    return { n, pixels: buf.subarray(16, 16 + n * 784) };
  }

  function makeBatcher(data, rng) {
    return function (B) {
      const out = new Float32Array(B * 784);
      for (let b = 0; b < B; b++) {
        if (data) {
          const idx = Math.floor(rng() * data.n);
          const src = data.pixels.subarray(idx * 784, idx * 784 + 784);
          for (let j = 0; j < 784; j++) out[b * 784 + j] = src[j] / 127.5 - 1;
        } else {
          for (let j = 0; j < 784; j++) out[b * 784 + j] = rng() * 2 - 1;
        }
      }
      return out;
    };
  }

  function median(a) {
    const s = a.slice().sort((x, y) => x - y), m = s.length >> 1;
    return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
  }

  async function adapterInfo(backend) {
    const info = { hardwareConcurrency: navigator.hardwareConcurrency };
    if (backend === 'webgpu') {
      const a = await navigator.gpu.requestAdapter({ powerPreference: 'high-performance' });
      const i = a.info || {};
      Object.assign(info, { vendor: i.vendor, architecture: i.architecture, device: i.device,
        description: i.description, isFallbackAdapter: i.isFallbackAdapter });
    } else if (backend === 'webgl') {
      const gl = document.createElement('canvas').getContext('webgl2');
      if (gl) {
        const ext = gl.getExtension('WEBGL_debug_renderer_info');
        info.vendor = ext ? gl.getParameter(ext.UNMASKED_VENDOR_WEBGL) : gl.getParameter(gl.VENDOR);
        info.renderer = ext ? gl.getParameter(ext.UNMASKED_RENDERER_WEBGL) : gl.getParameter(gl.RENDERER);
      }
      info.WEBGL_VERSION = tf.env().get('WEBGL_VERSION');
      info.WEBGL_RENDER_FLOAT32_ENABLED = tf.env().get('WEBGL_RENDER_FLOAT32_ENABLED');
    } else if (backend === 'wasm') {
      info.simd = await tf.env().getAsync('WASM_HAS_SIMD_SUPPORT');
      info.multithread = await tf.env().getAsync('WASM_HAS_MULTITHREAD_SUPPORT');
      info.crossOriginIsolated = self.crossOriginIsolated;
    }
    return info;
  }

  // ---------------------------------------------------------------- main
  async function runBench(opts) {
    const t0 = performance.now();
    const backend = opts.backend, B = opts.batch, C = CONFIGS[opts.config];
    if (!C) throw new Error('unknown config ' + opts.config);
    if (backend === 'wasm') tf.wasm.setWasmPaths(location.origin + '/lib/@tensorflow/tfjs-backend-wasm/dist/');
    const ok = await tf.setBackend(backend);
    if (!ok || tf.getBackend() !== backend) throw new Error('tf.setBackend(' + backend + ') failed; got ' + tf.getBackend());
    await tf.ready();
    const adapter = await adapterInfo(backend);
    log('backend ' + tf.getBackend() + ' ready; adapter ' + JSON.stringify(adapter));

    const rng = makeRng(opts.seed || 1234);
    let data = null;
    if (opts.data === 'mnist') { data = await loadMnist(); log('MNIST loaded: ' + data.n + ' images'); }
    const nextBatch = makeBatcher(data, rng);

    // theta (trainable), theta^- (CT target, EMA with mu(k)), theta_ema (sampling EMA, decay 0.999)
    const spec = paramSpec(C);
    const theta = {}, target = {}, ema = {}, thetaList = [], names = [];
    let params = 0;
    for (const [name, shape, kind, fanIn] of spec) {
      const init = initTensor(shape, kind, fanIn);
      theta[name] = tf.variable(init, true, 'theta/' + name);
      target[name] = tf.variable(init.clone(), false, 'target/' + name);
      ema[name] = tf.variable(init.clone(), false, 'ema/' + name);
      init.dispose();
      thetaList.push(theta[name]); names.push(name);
      params += shape.reduce((a, b) => a * b, 1);
    }
    log('params ' + params + ' in ' + names.length + ' tensors');

    const net = makeNet(C, opts.fused !== false);
    const opt = tf.train.adam(2e-4, 0.9, 0.999, 1e-8);
    const K = opts.totalK || 10000;
    const emaDecay = 0.999;
    let k = 0;
    const losses = [], warmMs = [], sampleWarmMs = [], sampleMs = [], stepMs = [];
    let steps = 0, tensorsAfterWarm = tf.memory().numTensors;
    // partial results go to the console after every phase, so run.mjs can print them on a timeout
    const progress = () => console.log('[progress] ' + JSON.stringify(result()));

    async function step() {
      const N = Nk(k, K), mu = muK(N);
      const xb = nextBatch(B);
      const tn = new Float32Array(B), tn1 = new Float32Array(B);
      for (let b = 0; b < B; b++) {
        const n = 1 + Math.floor(rng() * (N - 1)); // U{1..N-1}
        tn[b] = tI(n, N); tn1[b] = tI(n + 1, N);
      }
      const x = tf.tensor4d(xb, [B, 28, 28, 1]);
      const z = tf.randomNormal([B, 28, 28, 1]);
      // teacher: f_{theta^-}(x + t_n z, t_n), no gradient tape active here
      const teacher = tf.tidy(() => consistencyFn(net, target, tf.add(x, tf.mul(z, col(tn))), tn));
      // student with gradients + Adam update
      const loss = opt.minimize(() => {
        const student = consistencyFn(net, theta, tf.add(x, tf.mul(z, col(tn1))), tn1);
        return tf.mean(tf.squaredDifference(student, teacher));
      }, true, thetaList);
      // EMA updates: theta^- <- mu theta^- + (1-mu) theta ; theta_ema <- 0.999 theta_ema + 0.001 theta
      tf.tidy(() => {
        for (const n of names) {
          target[n].assign(tf.add(tf.mul(target[n], mu), tf.mul(theta[n], 1 - mu)));
          if (opts.sampleEma !== false) ema[n].assign(tf.add(tf.mul(ema[n], emaDecay), tf.mul(theta[n], 1 - emaDecay)));
        }
      });
      const lv = (await loss.data())[0]; // forces completion of everything queued above
      tf.dispose([x, z, teacher, loss]);
      k++;
      losses.push(lv);
      return lv;
    }

    async function timedStep() {
      const s = performance.now();
      const lv = await step();
      return [performance.now() - s, lv];
    }

    for (let i = 0; i < opts.warmup; i++) {
      const [ms, lv] = await timedStep();
      warmMs.push(ms);
      log(`warmup ${i + 1}/${opts.warmup}: ${ms.toFixed(1)} ms loss ${lv.toFixed(5)}`);
      progress();
    }
    tensorsAfterWarm = tf.memory().numTensors;

    // one-step sampling of 64 images from the sampling EMA: x = clamp(f_ema(x_T, T), -1, 1).
    // Measured after the training warm-up (a batch-64 training warm-up has already compiled the
    // batch-64 forward kernels); opts.sampleWarmup extra untimed calls first; sampleRuns 0 skips it.
    async function sample64() {
      const s = performance.now();
      const out = tf.tidy(() => {
        const xT = tf.mul(tf.randomNormal([64, 28, 28, 1]), T_MAX);
        return tf.clipByValue(consistencyFn(net, ema, xT, new Float32Array(64).fill(T_MAX)), -1, 1);
      });
      await out.data();
      out.dispose();
      return performance.now() - s;
    }
    if (opts.sampleRuns > 0) {
      for (let i = 0; i < opts.sampleWarmup; i++) {
        sampleWarmMs.push(await sample64());
        log(`sample64 warmup: ${sampleWarmMs[i].toFixed(1)} ms`);
      }
      const t1 = performance.now();
      while (sampleMs.length < opts.sampleRuns) {
        sampleMs.push(await sample64());
        log(`sample64 ${sampleMs.length}/${opts.sampleRuns}: ${sampleMs[sampleMs.length - 1].toFixed(1)} ms`);
        progress();
        if ((performance.now() - t1) / 1000 > opts.sampleBudgetS) break;
      }
    }


    // step budget: keep the whole page run under opts.budgetS seconds
    const est = warmMs.length ? warmMs[warmMs.length - 1] : 0;
    const elapsedS = (performance.now() - t0) / 1000;
    steps = opts.steps;
    if (est > 0) {
      const fit = Math.floor((opts.budgetS - elapsedS) * 1000 / est);
      steps = Math.max(opts.minSteps, Math.min(opts.steps, fit));
    }
    if (steps < opts.steps) log(`reducing measured steps ${opts.steps} -> ${steps} (est ${est.toFixed(0)} ms/step)`);

    for (let i = 0; i < steps; i++) {
      const [ms, lv] = await timedStep();
      stepMs.push(ms);
      log(`step ${i + 1}/${steps}: ${ms.toFixed(1)} ms loss ${lv.toFixed(5)}`);
      progress();
    }

    return result();
    function result() {
      const med = stepMs.length ? median(stepMs) : NaN;
      return {
        backend: tf.getBackend(), config: opts.config, batch: B, params,
        step_ms_median: stepMs.length ? +med.toFixed(2) : null,
        images_per_s: stepMs.length ? +(B * 1000 / med).toFixed(2) : null,
        sample64_ms: sampleMs.length ? +median(sampleMs).toFixed(2) : null,
        adapter,
        steps_measured: stepMs.length, steps_planned: steps, steps_requested: opts.steps, warmup: opts.warmup,
        step_ms_all: stepMs.map((v) => +v.toFixed(1)), warmup_ms: warmMs.map((v) => +v.toFixed(1)),
        sample64_ms_all: sampleMs.map((v) => +v.toFixed(1)), sample64_warmup_ms: sampleWarmMs.map((v) => +v.toFixed(1)),
        loss_first: losses[0], loss_last: losses[losses.length - 1],
        tensors_leaked_per_step: stepMs.length ? (tf.memory().numTensors - tensorsAfterWarm) / stepMs.length : null,
        data: opts.data, fused_ops: opts.fused !== false, sample_ema_in_step: opts.sampleEma !== false,
        tfjs_version: tf.version.tfjs, user_agent: navigator.userAgent,
      };
    }
  }

  window.runBench = runBench;
  // internals, for ad-hoc profiling from the console
  window.ctBenchInternals = { CONFIGS, paramSpec, initTensor, makeNet, consistencyFn, scalings };
})();
