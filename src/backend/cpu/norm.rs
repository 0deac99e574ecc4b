//! CPU twin of `../gpu/norm.rs`.
//!
//! Statistics and the affine-gradient sums accumulate in f64, so this is the accurate side of
//! every comparison with the GPU kernels (which sum in f32 through a workgroup tree).

use rayon::prelude::*;

use super::math::{sigmoid, silu_grad};

/// Added to the group variance before the square root (same as the GPU kernel).
const EPS: f64 = 1e-5;

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
            for (ch, (y, x)) in (c0..).zip(y.chunks_exact_mut(s).zip(x.chunks_exact(s))) {
                // a = gamma (x - mean) rstd + beta as one multiply-add per value, in f32 like the
                // kernel, so the loop vectorizes.
                let scale = (rstd * gamma[ch] as f64) as f32;
                let shift = (beta[ch] as f64 - mean * rstd * gamma[ch] as f64) as f32;
                if silu {
                    y.iter_mut().zip(x).for_each(|(y, &x)| {
                        let a = x * scale + shift;
                        *y = a * sigmoid(a);
                    });
                } else {
                    y.iter_mut().zip(x).for_each(|(y, &x)| *y = x * scale + shift);
                }
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
    if len == 0 {
        dgamma.fill(0.0);
        dbeta.fill(0.0);
        return;
    }
    // Per (sample, group), a contiguous run of `len` values: dx = rstd * (g - mean(g) - xhat *
    // mean(g * xhat)) with g = da * gamma, and this run's share of the affine gradients,
    // dgamma[c] = sum of da * xhat and dbeta[c] = sum of da (summed over samples below). The saved
    // stats are used, as the kernels do, so a gradient matches the forward that saved them.
    let mut partials = vec![(0.0f64, 0.0f64); n * c];
    dx.par_chunks_mut(len).zip(partials.par_chunks_mut(cpg)).enumerate().for_each_init(
        || Vec::with_capacity(len),
        |scratch: &mut Vec<(f32, f32)>, (ng, (dx, partial))| {
            let (base, c0) = (ng * len, (ng % groups) * cpg);
            let (mean, rstd) = (stats[2 * ng], stats[2 * ng + 1]);
            // (da, xhat) of each value: the one sigmoid per value is the costly part.
            scratch.clear();
            for (ch, (x, dy)) in
                (c0..).zip(x[base..base + len].chunks_exact(s).zip(dy[base..base + len].chunks_exact(s)))
            {
                scratch.extend(x.iter().zip(dy).map(|(&x, &dy)| {
                    let xh = (x - mean) * rstd;
                    (da(silu, dy, xh, gamma[ch], beta[ch]), xh)
                }));
            }
            let (mut sum_g, mut sum_gx) = (0.0f64, 0.0f64);
            for (channel, values) in scratch.chunks_exact(s).enumerate() {
                let gamma = gamma[c0 + channel];
                let (mut sum_dx, mut sum_d) = (0.0f64, 0.0f64);
                for &(d, xh) in values {
                    let g = (d * gamma) as f64;
                    sum_dx += d as f64 * xh as f64;
                    sum_d += d as f64;
                    sum_g += g;
                    sum_gx += g * xh as f64;
                }
                partial[channel] = (sum_dx, sum_d);
            }
            let (mean_g, mean_gx, rstd) = (sum_g / len as f64, sum_gx / len as f64, rstd as f64);
            for (ch, (dx, values)) in (c0..).zip(dx.chunks_exact_mut(s).zip(scratch.chunks_exact(s))) {
                for (dx, &(d, xh)) in dx.iter_mut().zip(values) {
                    let g = (d * gamma[ch]) as f64;
                    *dx = (rstd * (g - mean_g - xh as f64 * mean_gx)) as f32;
                }
            }
        },
    );
    for (ch, (dg, db)) in dgamma.iter_mut().zip(dbeta.iter_mut()).enumerate() {
        let (sum_dx, sum_d) = (0..n).map(|i| partials[i * c + ch]).fold((0.0, 0.0), |a, p| (a.0 + p.0, a.1 + p.1));
        *dg = sum_dx as f32;
        *db = sum_d as f32;
    }
}
