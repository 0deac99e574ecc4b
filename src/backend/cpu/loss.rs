//! CPU twins of `../gpu/loss.rs`. Reductions accumulate in f64.

use super::{data, data_mut, CpuBackend, CpuTensor};
use crate::backend::{LossOps, Metric};

impl LossOps for CpuBackend {
    fn loss(
        &self,
        metric: Metric,
        pred: &CpuTensor,
        target: &CpuTensor,
        weight: &CpuTensor,
        loss: &CpuTensor,
        stats: &CpuTensor,
    ) {
        let n = pred.dim(0);
        let (pred, target, weight, mut loss, mut stats) =
            (data(pred), data(target), data(weight), data_mut(loss), data_mut(stats));
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

    fn loss_backward(
        &self,
        metric: Metric,
        pred: &CpuTensor,
        target: &CpuTensor,
        weight: &CpuTensor,
        stats: &CpuTensor,
        dpred: &CpuTensor,
    ) {
        let n = pred.dim(0);
        let (pred, target, weight, stats, mut dpred) =
            (data(pred), data(target), data(weight), data(stats), data_mut(dpred));
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

    fn sum(&self, x: &CpuTensor, out: &CpuTensor, square: bool, scale: f32) {
        let x = data(x);
        let total: f64 =
            if square { x.iter().map(|&v| v as f64 * v as f64).sum() } else { x.iter().map(|&v| v as f64).sum() };
        data_mut(out)[0] = (scale as f64 * total) as f32;
    }

    /// In f64 with the row maximum subtracted.
    fn softmax_cross_entropy(&self, logits: &CpuTensor, labels: &CpuTensor, loss: &CpuTensor) {
        let n = logits.dim(0);
        assert!(labels.len() == n && loss.len() == n, "softmax_cross_entropy: labels and loss must be [{n}]");
        let (logits, labels, mut loss) = (data(logits), data(labels), data_mut(loss));
        let k = logits.len() / n;
        for s in 0..n {
            let Some(c) = class_of(labels[s], k) else {
                loss[s] = f32::NAN;
                continue;
            };
            let row = &logits[s * k..(s + 1) * k];
            let m = row.iter().fold(f64::NEG_INFINITY, |m, &z| m.max(z as f64));
            let sum: f64 = row.iter().map(|&z| (z as f64 - m).exp()).sum();
            loss[s] = (sum.ln() - (row[c] as f64 - m)) as f32;
        }
    }

    /// `dlogits[s, j] = (softmax(logits[s])_j - [j == labels[s]]) / n`.
    fn softmax_cross_entropy_backward(&self, logits: &CpuTensor, labels: &CpuTensor, dlogits: &CpuTensor) {
        let n = logits.dim(0);
        assert!(labels.len() == n && dlogits.len() == logits.len(), "softmax_cross_entropy_backward: shapes");
        let (logits, labels, mut dlogits) = (data(logits), data(labels), data_mut(dlogits));
        let k = logits.len() / n;
        for s in 0..n {
            let out = &mut dlogits[s * k..(s + 1) * k];
            let Some(c) = class_of(labels[s], k) else {
                out.fill(f32::NAN);
                continue;
            };
            let row = &logits[s * k..(s + 1) * k];
            let m = row.iter().fold(f64::NEG_INFINITY, |m, &z| m.max(z as f64));
            let sum: f64 = row.iter().map(|&z| (z as f64 - m).exp()).sum();
            for (j, (o, &z)) in out.iter_mut().zip(row).enumerate() {
                let p = (z as f64 - m).exp() / sum;
                *o = ((p - if j == c { 1.0 } else { 0.0 }) / n as f64) as f32;
            }
        }
    }
}

/// The class a label names (the nearest integer), or None when that is not in `0..k` (as the
/// shader: NaN and out-of-range labels give NaN outputs).
fn class_of(label: f32, k: usize) -> Option<usize> {
    let c = label.round();
    (c >= 0.0 && c < k as f32).then_some(c as usize)
}
