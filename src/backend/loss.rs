//! Losses and reductions (implemented in `cpu/loss.rs` and `gpu/loss.rs`).

use super::{BTensor, Memory};

/// Sample distance `d(x, y)` of a consistency loss, per sample over its `D` values
/// (`docs/paper.md`, sections 5 and 6: #consistency-training-algorithm-3, #improved-consistency-training).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Metric {
    /// Mean of squared differences.
    L2,
    /// Mean of absolute differences.
    L1,
    /// `sqrt(||x - y||^2 + c^2) - c` (improved CT).
    PseudoHuber { c: f32 },
}

/// Per-sample losses, their gradients, and sums.
pub trait LossOps: Memory {
    /// Per-sample weighted distance `loss[n] = weight[n] * d(pred[n], target[n])`, pred and
    /// target `[N, D]`; `stats[n]` keeps what the backward needs (`||pred - target||^2`).
    fn loss(
        &self,
        metric: Metric,
        pred: &BTensor<Self>,
        target: &BTensor<Self>,
        weight: &BTensor<Self>,
        loss: &BTensor<Self>,
        stats: &BTensor<Self>,
    );
    /// Gradient to pred of `mean_n loss[n]`.
    fn loss_backward(
        &self,
        metric: Metric,
        pred: &BTensor<Self>,
        target: &BTensor<Self>,
        weight: &BTensor<Self>,
        stats: &BTensor<Self>,
        dpred: &BTensor<Self>,
    );
    /// Per-sample softmax cross entropy of a classifier, `loss[n] = -log softmax(logits[n])[c_n]`,
    /// logits `[N, K]`, labels `[N]` holding class indices as f32 (like
    /// [`RandomOps::random_index`](super::RandomOps::random_index) gives; each rounded to the
    /// nearest integer, so labels that went through float arithmetic still name their class).
    /// Computed with the row maximum subtracted, so huge logits stay finite. A label outside
    /// `0..K` (or NaN) gives NaN.
    fn softmax_cross_entropy(&self, logits: &BTensor<Self>, labels: &BTensor<Self>, loss: &BTensor<Self>);
    /// Gradient to the logits of `mean_n loss[n]`: `(softmax(logits[n]) - onehot(c_n)) / N`
    /// into dlogits `[N, K]` (NaN rows for invalid labels, as the forward).
    fn softmax_cross_entropy_backward(&self, logits: &BTensor<Self>, labels: &BTensor<Self>, dlogits: &BTensor<Self>);
    /// `out[0] = scale * sum_i x_i` (or of `x_i^2` when `square`).
    fn sum(&self, x: &BTensor<Self>, out: &BTensor<Self>, square: bool, scale: f32);
}
