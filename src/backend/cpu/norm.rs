//! CPU twin of `../gpu/norm.rs`.
//!
//! Statistics and the affine-gradient sums accumulate in f64, so this is the accurate side of
//! every comparison with the GPU kernels (which sum in f32 through a workgroup tree).

use rayon::prelude::*;

/// Added to the group variance before the square root (same as the GPU kernel).
const EPS: f64 = 1e-5;

fn sigmoid(a: f32) -> f32 {
    // exp(-|a|) never overflows; the same form as the kernels.
    let e = (-a.abs()).exp();
    if a >= 0.0 {
        1.0 / (1.0 + e)
    } else {
        e / (1.0 + e)
    }
}

fn silu_grad(a: f32) -> f32 {
    let s = sigmoid(a);
    s + a * s * (1.0 - s)
}

/// `da = dy * silu'(gamma * xhat + beta)` when the forward fused SiLU, else `dy`.
fn da(silu: bool, dy: f32, xhat: f32, gamma: f32, beta: f32) -> f32 {
    if silu {
        dy * silu_grad(gamma * xhat + beta)
    } else {
        dy
    }
}

#[allow(clippy::too_many_arguments)]
pub fn group_norm(
    n: usize,
    c: usize,
    s: usize,
    groups: usize,
    silu: bool,
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
    y: &mut [f32],
    stats: &mut [f32],
) {
    assert!(groups > 0 && c.is_multiple_of(groups), "group_norm: {c} channels into {groups} groups");
    let cpg = c / groups;
    let len = cpg * s;
    assert!(x.len() == n * c * s && y.len() == x.len() && stats.len() == n * groups * 2);
    if len == 0 {
        return;
    }
    // Each (sample, group) is a contiguous run of `len` values.
    y.par_chunks_mut(len).zip(x.par_chunks(len)).zip(stats.par_chunks_mut(2)).enumerate().for_each(
        |(ng, ((y, x), stats))| {
            let mean = x.iter().map(|&v| v as f64).sum::<f64>() / len as f64;
            let var = x.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / len as f64;
            let rstd = 1.0 / (var + EPS).sqrt();
            let c0 = (ng % groups) * cpg;
            for (j, (y, &x)) in y.iter_mut().zip(x).enumerate() {
                let ch = c0 + j / s;
                let a = ((x as f64 - mean) * rstd) as f32 * gamma[ch] + beta[ch];
                *y = if silu { a * sigmoid(a) } else { a };
            }
            stats[0] = mean as f32;
            stats[1] = rstd as f32;
        },
    );
}

#[allow(clippy::too_many_arguments)]
pub fn group_norm_backward(
    n: usize,
    c: usize,
    s: usize,
    groups: usize,
    silu: bool,
    dy: &[f32],
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
    stats: &[f32],
    dx: &mut [f32],
    dgamma: &mut [f32],
    dbeta: &mut [f32],
) {
    assert!(groups > 0 && c.is_multiple_of(groups), "group_norm_backward: {c} channels into {groups} groups");
    let cpg = c / groups;
    let len = cpg * s;
    assert!(x.len() == n * c * s && dy.len() == x.len() && dx.len() == x.len() && stats.len() == n * groups * 2);
    assert!(dgamma.len() == c && dbeta.len() == c);
    // Uses the saved stats (as the kernels do), so a gradient matches the forward that saved them.
    let xhat = |i: usize, ng: usize| (x[i] - stats[2 * ng]) * stats[2 * ng + 1];

    if len > 0 {
        // dx = rstd * (g - mean(g) - xhat * mean(g * xhat)), g = da * gamma, per (sample, group).
        dx.par_chunks_mut(len).enumerate().for_each(|(ng, dx)| {
            let base = ng * len;
            let c0 = (ng % groups) * cpg;
            let g = |j: usize| {
                let ch = c0 + j / s;
                let xh = xhat(base + j, ng);
                (da(silu, dy[base + j], xh, gamma[ch], beta[ch]) * gamma[ch], xh)
            };
            let (mut sum_g, mut sum_gx) = (0.0f64, 0.0f64);
            for j in 0..len {
                let (g, xh) = g(j);
                sum_g += g as f64;
                sum_gx += g as f64 * xh as f64;
            }
            let (mean_g, mean_gx) = (sum_g / len as f64, sum_gx / len as f64);
            let rstd = stats[2 * ng + 1] as f64;
            for (j, dx) in dx.iter_mut().enumerate() {
                let (g, xh) = g(j);
                *dx = (rstd * (g as f64 - mean_g - xh as f64 * mean_gx)) as f32;
            }
        });
    }

    // dgamma[c] = sum of da * xhat, dbeta[c] = sum of da, over samples and positions.
    dgamma.par_iter_mut().zip(dbeta.par_iter_mut()).enumerate().for_each(|(ch, (dg, db))| {
        let (mut sum_gx, mut sum_d) = (0.0f64, 0.0f64);
        for i in 0..n {
            let ng = i * groups + ch / cpg;
            let base = (i * c + ch) * s;
            for (k, &dy) in (base..base + s).zip(&dy[base..base + s]) {
                let xh = xhat(k, ng);
                let d = da(silu, dy, xh, gamma[ch], beta[ch]);
                sum_gx += d as f64 * xh as f64;
                sum_d += d as f64;
            }
        }
        *dg = sum_gx as f32;
        *db = sum_d as f32;
    });
}
