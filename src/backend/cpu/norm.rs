//! CPU twin of `../gpu/norm.rs`.
//!
//! Statistics and the affine-gradient sums accumulate in f64, so this is the accurate side of
//! every comparison with the GPU kernels (which sum in f32 through a workgroup tree).

use rayon::prelude::*;

use super::math::{dot_f64, sigmoid, silu_grad, sum_f64};
use super::simd::Isa;
use super::{data, data_mut, CpuBackend, CpuTensor};
use crate::backend::NormOps;

/// Added to the group variance before the square root (same as the GPU kernel).
const EPS: f64 = 1e-5;

/// `da = dy * silu'(gamma * xhat + beta)` when the forward fused SiLU, else `dy`.
#[inline]
fn da(silu: bool, dy: f32, xhat: f32, gamma: f32, beta: f32) -> f32 {
    if silu {
        dy * silu_grad(gamma * xhat + beta)
    } else {
        dy
    }
}

impl NormOps for CpuBackend {
    fn group_norm(
        &self,
        groups: usize,
        silu: bool,
        x: &CpuTensor,
        gamma: &CpuTensor,
        beta: &CpuTensor,
        y: &CpuTensor,
        stats: &CpuTensor,
    ) {
        let (n, c) = (x.dim(0), x.dim(1));
        let s = x.len() / (n * c);
        let (x, gamma, beta, mut y, mut stats) = (data(x), data(gamma), data(beta), data_mut(y), data_mut(stats));
        let (x, gamma, beta, y, stats) = (&*x, &*gamma, &*beta, &mut *y, &mut *stats);
        assert!(groups > 0 && c.is_multiple_of(groups), "group_norm: {c} channels into {groups} groups");
        let cpg = c / groups;
        let len = cpg * s;
        assert!(x.len() == n * c * s && y.len() == x.len() && stats.len() == n * groups * 2);
        if len == 0 {
            return;
        }
        // Each (sample, group) is a contiguous run of `len` values.
        let isa = Isa::best();
        y.par_chunks_mut(len).zip(x.par_chunks(len)).zip(stats.par_chunks_mut(2)).enumerate().for_each(
            |(ng, ((y, x), stats))| {
                let c0 = (ng % groups) * cpg;
                let (gamma, beta) = (&gamma[c0..c0 + cpg], &beta[c0..c0 + cpg]);
                match isa {
                    #[cfg(target_arch = "x86_64")]
                    // SAFETY: Isa::best only picks Avx2Fma where the processor has it.
                    Isa::Avx2Fma => unsafe { normalize_run_avx2(s, silu, x, gamma, beta, y, stats) },
                    _ => normalize_run(s, silu, x, gamma, beta, y, stats),
                }
            },
        );
    }

    fn group_norm_backward(
        &self,
        groups: usize,
        silu: bool,
        dy: &CpuTensor,
        x: &CpuTensor,
        gamma: &CpuTensor,
        beta: &CpuTensor,
        stats: &CpuTensor,
        dx: &CpuTensor,
        dgamma: &CpuTensor,
        dbeta: &CpuTensor,
    ) {
        let (n, c) = (x.dim(0), x.dim(1));
        assert!(groups > 0 && c.is_multiple_of(groups), "group_norm_backward: {c} channels into {groups} groups");
        assert!(dgamma.len() == c && dbeta.len() == c);
        // dgamma and dbeta are usually views of one flat gradient tensor, which cannot be borrowed
        // mutably twice: the backward gives per-(sample, channel) partial sums, written into each
        // in turn.
        let partials = backward_all_runs(n, c, x.len() / (n * c), groups, silu, [dy, x, gamma, beta, stats], dx);
        let total = |ch: usize, pick: fn(&(f64, f64)) -> f64| {
            (0..n).map(|i| pick(&partials[i * c + ch])).fold(0.0, |a, p| a + p) as f32
        };
        for (ch, dg) in data_mut(dgamma).iter_mut().enumerate() {
            *dg = total(ch, |p| p.0);
        }
        for (ch, db) in data_mut(dbeta).iter_mut().enumerate() {
            *db = total(ch, |p| p.1);
        }
    }

    fn channel_normalize(&self, x: &CpuTensor, y: &CpuTensor, r: &CpuTensor) {
        let (n, c) = (x.dim(0), x.dim(1));
        let s = x.len() / (n * c);
        let (x, mut y, mut r) = (data(x), data_mut(y), data_mut(r));
        assert!(x.len() == n * c * s && y.len() == x.len() && r.len() == n * s, "channel_normalize: shapes");
        for sample in 0..n {
            for p in 0..s {
                let at = |ch: usize| sample * c * s + ch * s + p;
                let norm = (0..c).map(|ch| (x[at(ch)] as f64).powi(2)).sum::<f64>().sqrt();
                for ch in 0..c {
                    y[at(ch)] = (x[at(ch)] as f64 / (norm + NORMALIZE_EPS)) as f32;
                }
                r[sample * s + p] = norm as f32;
            }
        }
    }

    /// `dx = dy / (r + eps) - x <x, dy> / (r (r + eps)^2)`.
    fn channel_normalize_backward(&self, x: &CpuTensor, r: &CpuTensor, dy: &CpuTensor, dx: &CpuTensor) {
        let (n, c) = (x.dim(0), x.dim(1));
        let s = x.len() / (n * c);
        let (x, r, dy, mut dx) = (data(x), data(r), data(dy), data_mut(dx));
        assert!(x.len() == n * c * s && dy.len() == x.len() && dx.len() == x.len() && r.len() == n * s);
        for sample in 0..n {
            for p in 0..s {
                let at = |ch: usize| sample * c * s + ch * s + p;
                let dot: f64 = (0..c).map(|ch| x[at(ch)] as f64 * dy[at(ch)] as f64).sum();
                let norm = r[sample * s + p] as f64;
                let k = if norm > 0.0 { dot / (norm * (norm + NORMALIZE_EPS).powi(2)) } else { 0.0 };
                for ch in 0..c {
                    dx[at(ch)] = (dy[at(ch)] as f64 / (norm + NORMALIZE_EPS) - x[at(ch)] as f64 * k) as f32;
                }
            }
        }
    }
}

/// Added to the channel norm before dividing (as in the shaders and LPIPS).
const NORMALIZE_EPS: f64 = 1e-10;

/// One (sample, group) run of [`NormOps::group_norm`] (channels of `s` values, their gamma and beta).
/// The sums and the per-value sigmoid are a fifth of a CPU step: compiled for AVX2 too.
#[inline(always)]
fn normalize_run(s: usize, silu: bool, x: &[f32], gamma: &[f32], beta: &[f32], y: &mut [f32], stats: &mut [f32]) {
    let len = x.len();
    let mean = sum_f64(x, |v| v) / len as f64;
    let var = sum_f64(x, |v| (v - mean) * (v - mean)) / len as f64;
    let rstd = 1.0 / (var + EPS).sqrt();
    for ((y, x), (&gamma, &beta)) in y.chunks_exact_mut(s).zip(x.chunks_exact(s)).zip(gamma.iter().zip(beta)) {
        // a = (x - mean) (rstd gamma) + beta in f32, like the kernel, so the loop
        // vectorizes. (Folding the mean into the shift would cancel catastrophically
        // when rstd is large.)
        let (mean, scale, shift) = (mean as f32, (rstd * gamma as f64) as f32, beta);
        if silu {
            y.iter_mut().zip(x).for_each(|(y, &x)| {
                let a = (x - mean) * scale + shift;
                *y = a * sigmoid(a);
            });
        } else {
            y.iter_mut().zip(x).for_each(|(y, &x)| *y = (x - mean) * scale + shift);
        }
    }
    stats[0] = mean as f32;
    stats[1] = rstd as f32;
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn normalize_run_avx2(
    s: usize,
    silu: bool,
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
    y: &mut [f32],
    stats: &mut [f32],
) {
    normalize_run(s, silu, x, gamma, beta, y, stats)
}

/// dx of [`NormOps::group_norm_backward`], and each (sample, channel)'s share of the affine
/// gradients `(sum da * xhat, sum da)`.
fn backward_all_runs(
    n: usize,
    c: usize,
    s: usize,
    groups: usize,
    silu: bool,
    [dy, x, gamma, beta, stats]: [&CpuTensor; 5],
    dx: &CpuTensor,
) -> Vec<(f64, f64)> {
    let (dy, x, gamma, beta, stats, mut dx) = (data(dy), data(x), data(gamma), data(beta), data(stats), data_mut(dx));
    let (dy, x, gamma, beta, stats, dx) = (&*dy, &*x, &*gamma, &*beta, &*stats, &mut *dx);
    let cpg = c / groups;
    let len = cpg * s;
    assert!(x.len() == n * c * s && dy.len() == x.len() && dx.len() == x.len() && stats.len() == n * groups * 2);
    let mut partials = vec![(0.0f64, 0.0f64); n * c];
    if len == 0 {
        return partials;
    }
    // Per (sample, group), a contiguous run of `len` values: dx = rstd * (g - mean(g) - xhat *
    // mean(g * xhat)) with g = da * gamma, and this run's share of the affine gradients,
    // dgamma[c] = sum of da * xhat and dbeta[c] = sum of da (summed over samples below). The saved
    // stats are used, as the kernels do, so a gradient matches the forward that saved them.
    let isa = Isa::best();
    dx.par_chunks_mut(len).zip(partials.par_chunks_mut(cpg)).enumerate().for_each_init(
        || (vec![0.0f32; len], vec![0.0f32; len]),
        |(da_run, xhat_run), (ng, (dx, partial))| {
            let (base, c0) = (ng * len, (ng % groups) * cpg);
            let (mean, rstd) = (stats[2 * ng], stats[2 * ng + 1]);
            let (x, dy) = (&x[base..base + len], &dy[base..base + len]);
            let (gamma, beta) = (&gamma[c0..c0 + cpg], &beta[c0..c0 + cpg]);
            let run = Run { s, silu, mean, rstd, x, dy, gamma, beta };
            match isa {
                #[cfg(target_arch = "x86_64")]
                // SAFETY: Isa::best only picks Avx2Fma where the processor has it.
                Isa::Avx2Fma => unsafe { backward_run_avx2(&run, da_run, xhat_run, dx, partial) },
                _ => backward_run(&run, da_run, xhat_run, dx, partial),
            }
        },
    );
    partials
}

/// One (sample, group) run of [`NormOps::group_norm_backward`]: its statistics, values, output
/// gradients and the group's gamma and beta.
struct Run<'a> {
    s: usize,
    silu: bool,
    mean: f32,
    rstd: f32,
    x: &'a [f32],
    dy: &'a [f32],
    gamma: &'a [f32],
    beta: &'a [f32],
}

/// dx of one run and its channels' (sum da xhat, sum da); compiled for AVX2 too (the sigmoid
/// per value and the f64 sums).
#[inline(always)]
fn backward_run(run: &Run, da_run: &mut [f32], xhat_run: &mut [f32], dx: &mut [f32], partial: &mut [(f64, f64)]) {
    let len = run.x.len();
    // da and xhat of each value, per channel (the one sigmoid per value is the costly
    // part), then the channel's sums of da * xhat and da, from which the group's sums of
    // g = da * gamma and g * xhat follow (gamma is constant over a channel).
    let (mut sum_g, mut sum_gx) = (0.0f64, 0.0f64);
    for (channel, (((x, dy), da_out), xhat_out)) in run
        .x
        .chunks_exact(run.s)
        .zip(run.dy.chunks_exact(run.s))
        .zip(da_run.chunks_exact_mut(run.s))
        .zip(xhat_run.chunks_exact_mut(run.s))
        .enumerate()
    {
        let (gamma, beta) = (run.gamma[channel], run.beta[channel]);
        for (((&x, &dy), da_out), xhat_out) in x.iter().zip(dy).zip(da_out.iter_mut()).zip(xhat_out.iter_mut()) {
            let xh = (x - run.mean) * run.rstd;
            *xhat_out = xh;
            *da_out = da(run.silu, dy, xh, gamma, beta);
        }
        let (sum_dx, sum_d) = (dot_f64(da_out, xhat_out), sum_f64(da_out, |v| v));
        partial[channel] = (sum_dx, sum_d);
        sum_g += gamma as f64 * sum_d;
        sum_gx += gamma as f64 * sum_dx;
    }
    // dx = rstd (g - mean(g) - xhat mean(g xhat)), per value in f32 (vectorized).
    let (mean_g, mean_gx) = ((sum_g / len as f64) as f32, (sum_gx / len as f64) as f32);
    for (channel, ((dx, da), xhat)) in
        dx.chunks_exact_mut(run.s).zip(da_run.chunks_exact(run.s)).zip(xhat_run.chunks_exact(run.s)).enumerate()
    {
        let gamma = run.gamma[channel];
        for ((dx, &d), &xh) in dx.iter_mut().zip(da).zip(xhat) {
            *dx = run.rstd * (d * gamma - mean_g - xh * mean_gx);
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn backward_run_avx2(
    run: &Run,
    da_run: &mut [f32],
    xhat_run: &mut [f32],
    dx: &mut [f32],
    partial: &mut [(f64, f64)],
) {
    backward_run(run, da_run, xhat_run, dx, partial)
}
