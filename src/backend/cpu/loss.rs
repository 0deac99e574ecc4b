//! CPU twins of `../gpu/loss.rs`. Reductions accumulate in f64.

use crate::backend::Metric;

pub fn loss(
    metric: Metric,
    n: usize,
    pred: &[f32],
    target: &[f32],
    weight: &[f32],
    loss: &mut [f32],
    stats: &mut [f32],
) {
    let d = pred.len() / n;
    for s in 0..n {
        let (mut sq, mut ab) = (0.0f64, 0.0f64);
        for i in s * d..(s + 1) * d {
            let r = (pred[i] - target[i]) as f64;
            sq += r * r;
            ab += r.abs();
        }
        let dist = match metric {
            Metric::L2 => sq / d as f64,
            Metric::L1 => ab / d as f64,
            Metric::PseudoHuber { c } => {
                // sqrt(sq + c^2) - c without the cancellation, as in the shader.
                let c = c as f64;
                let den = (sq + c * c).sqrt() + c;
                if den > 0.0 {
                    sq / den
                } else {
                    0.0
                }
            }
        };
        loss[s] = (weight[s] as f64 * dist) as f32;
        stats[s] = sq as f32;
    }
}

pub fn loss_backward(
    metric: Metric,
    n: usize,
    pred: &[f32],
    target: &[f32],
    weight: &[f32],
    stats: &[f32],
    dpred: &mut [f32],
) {
    let d = pred.len() / n;
    for s in 0..n {
        let scale = weight[s] / n as f32;
        for i in s * d..(s + 1) * d {
            let r = pred[i] - target[i];
            let g = match metric {
                Metric::L2 => 2.0 * r / d as f32,
                // signum would give +-1 at r = 0; the subgradient 0 matches the shader's sign().
                Metric::L1 => {
                    (if r > 0.0 {
                        1.0
                    } else if r < 0.0 {
                        -1.0
                    } else {
                        0.0
                    }) / d as f32
                }
                Metric::PseudoHuber { c } => {
                    let den = (stats[s] + c * c).sqrt();
                    if den > 0.0 {
                        r / den
                    } else {
                        0.0
                    }
                }
            };
            dpred[i] = scale * g;
        }
    }
}

pub fn sum(x: &[f32], square: bool, scale: f32) -> f32 {
    let total: f64 =
        if square { x.iter().map(|&v| v as f64 * v as f64).sum() } else { x.iter().map(|&v| v as f64).sum() };
    (scale as f64 * total) as f32
}
