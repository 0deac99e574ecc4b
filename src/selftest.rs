//! The engine checking itself where it runs: the same ops on two backends (the GPU and the CPU
//! twin) with the same inputs, compared. The native test suite does this kernel by kernel on
//! lavapipe; this runs in the browser (WebGPU on whatever adapter the page got, against the CPU
//! backend compiled to wasm), where a different shader compiler may read our WGSL differently.

use crate::backend::{AdamStep, BTensor, Backend, Metric, RandomKey};
use crate::image::{digit_shape, PIXELS, SIDE};
use crate::nn::{UNet, Widths};

/// One comparison: the largest difference found, relative to the values' scale, and the
/// tolerance it must stay within.
#[derive(Clone, Debug)]
pub struct Check {
    pub name: String,
    pub error: f32,
    pub tolerance: f32,
}

impl Check {
    pub fn passed(&self) -> bool {
        self.error <= self.tolerance
    }
}

/// `max |a - b| / max(max |b|, tiny)`: a scale-free distance between two results.
fn relative_error(a: &[f32], b: &[f32]) -> f32 {
    let scale = b.iter().fold(0.0f32, |m, v| m.max(v.abs())).max(1e-12);
    let worst =
        a.iter().zip(b).fold(0.0f32, |m, (x, y)| if x.is_finite() { m.max((x - y).abs()) } else { f32::INFINITY });
    worst / scale
}

/// Deterministic inputs in [-1, 1) from Philox, so both backends get the same values.
fn inputs(len: usize, stream: u32) -> Vec<f32> {
    let key = RandomKey { seed: 99, step: 0, stream };
    (0..len as u32).map(|i| 2.0 * crate::random::uniform(key, i) - 1.0).collect()
}

/// Everything one backend computes for the checks, read back in a fixed order.
async fn compute<B: Backend>(be: &B) -> crate::Result<Vec<(&'static str, Vec<f32>)>> {
    let mut out = Vec::new();
    let t = |data: &[f32], shape: &[usize]| -> BTensor<B> { be.upload(data, shape) };

    // The whole network, forward and backward: convolutions, linear layers, GroupNorm+SiLU,
    // SiLU, upsampling, concatenation, broadcast adds, the time embedding, channel sums.
    let net = UNet::new(Widths::TINY);
    let n = 2;
    let params = t(&net.layout.init(5), &[net.layout.len]);
    let grads = be.zeros(&[net.layout.len]);
    let x = t(&inputs(n * PIXELS, 1), &digit_shape(n));
    let c_noise = t(&[-1.2, 0.9], &[n]);
    let (y, cache) = net.forward(be, &params, &x, &c_noise, None);
    let dy = t(&inputs(n * PIXELS, 2), &digit_shape(n));
    net.backward(be, &params, &grads, &cache, &dy);
    out.push(("network forward", be.read(&y).await?));
    out.push(("network backward", be.read(&grads).await?));

    // Losses, their gradients, reductions.
    let (rows, dim) = (3, 50);
    let pred = t(&inputs(rows * dim, 3), &[rows, dim]);
    let target = t(&inputs(rows * dim, 4), &[rows, dim]);
    let weight = t(&[0.5, 1.0, 2.0], &[rows]);
    for (name, metric) in
        [("loss l2", Metric::L2), ("loss l1", Metric::L1), ("loss pseudo-huber", Metric::PseudoHuber { c: 0.03 })]
    {
        let (loss, stats, dpred) = (be.empty(&[rows]), be.empty(&[rows]), be.empty(&[rows, dim]));
        be.loss(metric, &pred, &target, &weight, &loss, &stats);
        be.loss_backward(metric, &pred, &target, &weight, &stats, &dpred);
        let mean = be.empty(&[1]);
        be.sum(&loss, &mean, false, 1.0 / rows as f32);
        let mut values = be.read(&mean).await?;
        values.extend(be.read(&dpred).await?);
        out.push((name, values));
    }

    // The perceptual distance's channel normalization and its backward.
    let shape = [2, 24, 5, 7];
    let len = 2 * 24 * 35;
    let (features, dy) = (t(&inputs(len, 11), &shape), t(&inputs(len, 12), &shape));
    let (normalized, norms, dx) = (be.empty(&shape), be.empty(&[2, 35]), be.empty(&shape));
    be.channel_normalize(&features, &normalized, &norms);
    be.channel_normalize_backward(&features, &norms, &dy, &dx);
    let mut values = be.read(&normalized).await?;
    values.extend(be.read(&dx).await?);
    out.push(("channel normalize", values));

    // The classifier's softmax cross entropy and its gradient.
    let classes = 10;
    let logits = t(&inputs(rows * classes, 7).iter().map(|v| 4.0 * v).collect::<Vec<_>>(), &[rows, classes]);
    let labels = t(&[3.0, 0.0, 9.0], &[rows]);
    let (loss, dlogits) = (be.empty(&[rows]), be.empty(&[rows, classes]));
    be.softmax_cross_entropy(&logits, &labels, &loss);
    be.softmax_cross_entropy_backward(&logits, &labels, &dlogits);
    let mut values = be.read(&loss).await?;
    values.extend(be.read(&dlogits).await?);
    out.push(("softmax cross entropy", values));

    // Optimizer: clipped Adam steps and an EMA over a flat vector.
    let len = 1000;
    let (p, g, m, v) = (t(&inputs(len, 5), &[len]), t(&inputs(len, 6), &[len]), be.zeros(&[len]), be.zeros(&[len]));
    let avg = be.zeros(&[len]);
    for step in 1..=3 {
        let sumsq = be.empty(&[1]);
        be.sum(&g, &sumsq, true, 1.0);
        let adam = AdamStep { lr: 1e-2, beta1: 0.9, beta2: 0.999, eps: 1e-8, t: step, max_grad_norm: 5.0 };
        be.adam(&adam, &p, &g, &m, &v, &sumsq);
        be.ema(0.9, &avg, &p);
    }
    out.push(("adam and ema", be.read(&avg).await?));

    // The projection of zero-shot editing: inpainting (a choice per pixel, one mask per image)
    // and super-resolution (4x4 tile means, one mask for all images).
    let shape = digit_shape(n);
    let (ex, ey) = (t(&inputs(n * PIXELS, 8), &shape), t(&inputs(n * PIXELS, 9), &shape));
    let pixel_mask: Vec<f32> = inputs(n * PIXELS, 10).iter().map(|v| if *v > 0.0 { 1.0 } else { 0.0 }).collect();
    // The top four rows of tiles.
    let tile_mask: Vec<f32> = (0..PIXELS).map(|i| if i / SIDE < 16 { 1.0 } else { 0.0 }).collect();
    let (inpainted, resolved) = (be.empty(&shape), be.empty(&shape));
    be.keep_known(1, &ex, &ey, &t(&pixel_mask, &shape), &inpainted);
    be.keep_known(4, &ex, &ey, &t(&tile_mask, &digit_shape(1)), &resolved);
    let mut values = be.read(&inpainted).await?;
    values.extend(be.read(&resolved).await?);
    out.push(("keep known (editing)", values));

    // Random numbers and the minibatch gather.
    let key = RandomKey { seed: 7, step: 3, stream: 1 };
    let (u, z, idx) = (be.empty(&[len]), be.empty(&[len]), be.empty(&[4]));
    be.random_uniform(key, &u);
    be.random_normal(key, &z);
    be.random_index(key, 5, &idx);
    let bytes: Vec<u8> = (0..5 * 13).map(|i| (i * 37 % 256) as u8).collect();
    let data = be.upload_bytes(&bytes);
    let rows_out = be.empty(&[4, 13]);
    be.gather_rows(&data, 13, &idx, &rows_out);
    out.push(("random uniform", be.read(&u).await?));
    out.push(("random normal", be.read(&z).await?));
    out.push(("gather rows", be.read(&rows_out).await?));
    Ok(out)
}

/// Runs every check on `gpu` against `cpu`.
pub async fn run<G: Backend, C: Backend>(gpu: &G, cpu: &C) -> crate::Result<Vec<Check>> {
    let on_gpu = compute(gpu).await?;
    let on_cpu = compute(cpu).await?;
    Ok(on_gpu
        .into_iter()
        .zip(on_cpu)
        .map(|((name, a), (_, b))| Check {
            name: name.to_string(),
            error: relative_error(&a, &b),
            // Summation order differs between tiled kernels and CPU loops; WGSL's log and cos
            // (in the Gaussian draw) have implementation-defined precision.
            tolerance: match name {
                "network forward" | "network backward" => 2e-3,
                "random normal" => 1e-3,
                _ => 1e-4,
            },
        })
        .collect())
}
