//! GroupNorm (with and without the fused SiLU) against its CPU twin, and its backward against
//! central finite differences on both backends.

mod common;

use common::*;
use consistency::backend::{BTensor, Backend};

/// (N, C, H, W, groups). Odd sizes on purpose: batch 3, 5x7 images, 3 and 1 channels per group,
/// groups shorter than a workgroup (105 values) and much longer (3920), 1x1 images (a group of
/// one value: zero variance), a group count other than 8.
const SHAPES: &[(usize, usize, usize, usize, usize)] =
    &[(3, 24, 5, 7, 8), (2, 8, 16, 16, 8), (2, 16, 14, 14, 8), (2, 40, 28, 28, 8), (3, 8, 1, 1, 8), (2, 6, 3, 3, 3)];

/// x with a mean well away from zero (the two-pass variance must not cancel), gamma around 1,
/// beta around 0.
fn inputs(n: usize, c: usize, s: usize, seed: u64) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let x = random_vec(n * c * s, seed).iter().map(|v| 2.0 + 1.5 * v).collect();
    let gamma = random_vec(c, seed + 1).iter().map(|v| 1.0 + 0.5 * v).collect();
    let beta = random_vec(c, seed + 2).iter().map(|v| 0.5 * v).collect();
    (x, gamma, beta)
}

/// Runs the forward pass on `be` and returns (y, stats).
fn forward<B: Backend>(
    be: &B,
    shape: [usize; 4],
    groups: usize,
    silu: bool,
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
) -> (Vec<f32>, Vec<f32>) {
    let c = shape[1];
    let (tx, tg, tb) = (be.upload(x, &shape), be.upload(gamma, &[c]), be.upload(beta, &[c]));
    let (y, stats): (BTensor<B>, BTensor<B>) = (be.zeros(&shape), be.zeros(&[shape[0], groups, 2]));
    be.group_norm(groups, silu, &tx, &tg, &tb, &y, &stats);
    (read(be, &y), read(be, &stats))
}

/// Runs the backward pass on `be` and returns (dx, dgamma, dbeta).
#[allow(clippy::too_many_arguments)]
fn backward<B: Backend>(
    be: &B,
    shape: [usize; 4],
    groups: usize,
    silu: bool,
    dy: &[f32],
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
    stats: &[f32],
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let c = shape[1];
    let (tdy, tx) = (be.upload(dy, &shape), be.upload(x, &shape));
    let (tg, tb, ts) = (be.upload(gamma, &[c]), be.upload(beta, &[c]), be.upload(stats, &[shape[0], groups, 2]));
    let (dx, dg, db): (BTensor<B>, BTensor<B>, BTensor<B>) = (be.zeros(&shape), be.zeros(&[c]), be.zeros(&[c]));
    be.group_norm_backward(groups, silu, &tdy, &tx, &tg, &tb, &ts, &dx, &dg, &db);
    (read(be, &dx), read(be, &dg), read(be, &db))
}

#[test]
fn group_norm_forward_matches_cpu() {
    let (g, c) = (gpu(), cpu());
    for (k, &(n, ch, h, w, groups)) in SHAPES.iter().enumerate() {
        let (x, gamma, beta) = inputs(n, ch, h * w, 10 + k as u64);
        for silu in [false, true] {
            let what = format!("group_norm {n}x{ch}x{h}x{w} groups {groups} silu {silu}");
            let (gy, gs) = forward(&g, [n, ch, h, w], groups, silu, &x, &gamma, &beta);
            let (cy, cs) = forward(&c, [n, ch, h, w], groups, silu, &x, &gamma, &beta);
            // The GPU sums in f32 (per-invocation partial sums, then a tree), the CPU in f64.
            // Both give the statistics to a few f32 ulps; y = O(1) inherits that.
            assert_close(&format!("{what}: stats"), &gs, &cs, 1e-4, 1e-5);
            assert_close(&format!("{what}: y"), &gy, &cy, 1e-4, 1e-5);
        }
    }
}

#[test]
fn group_norm_forward_normalises() {
    // The CPU twin itself: without SiLU, gamma 1 and beta 0, each group has mean 0 and variance
    // var / (var + eps); the stats hold the group's mean and 1/std.
    let c = cpu();
    let (n, ch, s, groups) = (3, 24, 35, 8);
    let (x, _, _) = inputs(n, ch, s, 5);
    let (y, stats) = forward(&c, [n, ch, 5, 7], groups, false, &x, &vec![1.0; ch], &vec![0.0; ch]);
    let len = ch / groups * s;
    for ng in 0..n * groups {
        let xs = &x[ng * len..(ng + 1) * len];
        let mean = xs.iter().map(|&v| v as f64).sum::<f64>() / len as f64;
        let var = xs.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / len as f64;
        let ys = &y[ng * len..(ng + 1) * len];
        let ymean = ys.iter().map(|&v| v as f64).sum::<f64>() / len as f64;
        let yvar = ys.iter().map(|&v| (v as f64 - ymean).powi(2)).sum::<f64>() / len as f64;
        assert!(ymean.abs() < 1e-6, "group {ng}: mean {ymean}");
        assert!((yvar - var / (var + 1e-5)).abs() < 1e-5, "group {ng}: variance {yvar}");
        assert_close(
            "stats",
            &stats[2 * ng..2 * ng + 2],
            &[mean as f32, (1.0 / (var + 1e-5).sqrt()) as f32],
            1e-6,
            0.0,
        );
    }
}

#[test]
fn group_norm_backward_matches_cpu() {
    let (g, c) = (gpu(), cpu());
    for (k, &(n, ch, h, w, groups)) in SHAPES.iter().enumerate() {
        let shape = [n, ch, h, w];
        let (x, gamma, beta) = inputs(n, ch, h * w, 20 + k as u64);
        let dy = random_vec(x.len(), 30 + k as u64);
        for silu in [false, true] {
            let what = format!("group_norm_backward {n}x{ch}x{h}x{w} groups {groups} silu {silu}");
            // Both backends get the same saved stats, so this compares the backward kernels alone.
            let (_, stats) = forward(&c, shape, groups, silu, &x, &gamma, &beta);
            let (gdx, gdg, gdb) = backward(&g, shape, groups, silu, &dy, &x, &gamma, &beta, &stats);
            let (cdx, cdg, cdb) = backward(&c, shape, groups, silu, &dy, &x, &gamma, &beta, &stats);
            assert_close(&format!("{what}: dx"), &gdx, &cdx, 1e-4, 1e-5);
            // dgamma and dbeta are sums of N * S terms of size ~1 and random sign, which cancel:
            // the f32 rounding of the GPU's sums is relative to the terms, not to the (smaller)
            // result, so the absolute tolerance grows like the random walk of the rounding
            // errors, with the square root of the number of terms.
            let atol = 1e-5 * ((n * h * w) as f32).sqrt();
            assert_close(&format!("{what}: dgamma"), &gdg, &cdg, 1e-4, atol);
            assert_close(&format!("{what}: dbeta"), &gdb, &cdb, 1e-4, atol);
        }
    }
}

/// GroupNorm's gradients to x, gamma and beta against central finite differences of the same
/// backend's forward pass, with and without SiLU.
fn group_norm_gradients<B: Backend>(be: &B) {
    // 2 channels per group, 15 values each: small enough to probe many coordinates.
    let (n, ch, h, w, groups) = (2, 6, 3, 5, 3);
    let shape = [n, ch, h, w];
    let (x, gamma, beta) = inputs(n, ch, h * w, 40);
    let r = random_vec(x.len(), 41);
    for silu in [false, true] {
        let (_, stats) = forward(be, shape, groups, silu, &x, &gamma, &beta);
        let (dx, dgamma, dbeta) = backward(be, shape, groups, silu, &r, &x, &gamma, &beta, &stats);
        // The forward is f32 with outputs ~1: rounding noise in the loss is ~1e-6, so h = 1e-2
        // keeps it (and the O(h^2) truncation error) well under the tolerance.
        let (h, tol) = (1e-2, 3e-3);
        let what = |p: &str| format!("group_norm silu {silu}: d/d{p}");
        check_gradient(
            &what("x"),
            &mut |v| forward(be, shape, groups, silu, v, &gamma, &beta).0,
            &x,
            &r,
            &dx,
            h,
            tol,
            90,
        );
        check_gradient(
            &what("gamma"),
            &mut |v| forward(be, shape, groups, silu, &x, v, &beta).0,
            &gamma,
            &r,
            &dgamma,
            h,
            tol,
            ch,
        );
        check_gradient(
            &what("beta"),
            &mut |v| forward(be, shape, groups, silu, &x, &gamma, v).0,
            &beta,
            &r,
            &dbeta,
            h,
            tol,
            ch,
        );
    }
}

#[test]
fn group_norm_gradients_cpu() {
    group_norm_gradients(&cpu());
}

#[test]
fn group_norm_gradients_gpu() {
    group_norm_gradients(&gpu());
}

/// Runs channel_normalize on `be`: (y, r).
fn normalize<B: Backend>(be: &B, shape: [usize; 4], x: &[f32]) -> (Vec<f32>, Vec<f32>) {
    let (y, r): (BTensor<B>, BTensor<B>) = (be.zeros(&shape), be.zeros(&[shape[0], shape[2] * shape[3]]));
    be.channel_normalize(&be.upload(x, &shape), &y, &r);
    (read(be, &y), read(be, &r))
}

fn normalize_backward<B: Backend>(be: &B, shape: [usize; 4], x: &[f32], r: &[f32], dy: &[f32]) -> Vec<f32> {
    let dx: BTensor<B> = be.zeros(&shape);
    let r = be.upload(r, &[shape[0], shape[2] * shape[3]]);
    be.channel_normalize_backward(&be.upload(x, &shape), &r, &be.upload(dy, &shape), &dx);
    read(be, &dx)
}

#[test]
fn channel_normalize_matches_cpu_and_has_unit_norm() {
    let (g, c) = (gpu(), cpu());
    // Odd shapes; more pixels than a workgroup (2 x 28 x 28), one channel, one pixel.
    for (k, &(n, ch, h, w)) in [(3, 24, 5, 7), (2, 16, 28, 28), (2, 1, 3, 3), (4, 96, 1, 1)].iter().enumerate() {
        let shape = [n, ch, h, w];
        let x = random_vec(n * ch * h * w, 50 + k as u64);
        let what = format!("channel_normalize {n}x{ch}x{h}x{w}");
        let (gy, gr) = normalize(&g, shape, &x);
        let (cy, cr) = normalize(&c, shape, &x);
        assert_close(&format!("{what}: y"), &gy, &cy, 1e-5, 1e-6);
        assert_close(&format!("{what}: r"), &gr, &cr, 1e-5, 1e-6);
        // The CPU twin itself: every pixel's channel vector has unit length.
        for sample in 0..n {
            for p in 0..h * w {
                let sq: f32 = (0..ch).map(|j| cy[(sample * ch + j) * h * w + p].powi(2)).sum();
                assert!((sq - 1.0).abs() < 1e-5, "{what}: |y| = {}", sq.sqrt());
            }
        }
        let dy = random_vec(x.len(), 60 + k as u64);
        let gdx = normalize_backward(&g, shape, &x, &cr, &dy);
        let cdx = normalize_backward(&c, shape, &x, &cr, &dy);
        assert_close(&format!("{what}: dx"), &gdx, &cdx, 1e-4, 1e-5);
    }
}

fn channel_normalize_gradient<B: Backend>(be: &B) {
    let shape = [2, 5, 3, 4];
    let x = random_vec(2 * 5 * 12, 70);
    let dy = random_vec(x.len(), 71);
    let (_, r) = normalize(be, shape, &x);
    let dx = normalize_backward(be, shape, &x, &r, &dy);
    check_gradient("channel_normalize: d/dx", &mut |v| normalize(be, shape, v).0, &x, &dy, &dx, 1e-2, 3e-3, 60);
}

#[test]
fn channel_normalize_gradient_cpu() {
    channel_normalize_gradient(&cpu());
}

#[test]
fn channel_normalize_gradient_gpu() {
    channel_normalize_gradient(&gpu());
}
