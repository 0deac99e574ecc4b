//! The optimizer's steps over a whole flat parameter buffer (implemented in `cpu/optim.rs` and
//! `gpu/optim.rs`).

use super::{BTensor, Memory};

/// One Adam step with bias correction, applied to a whole flat parameter buffer.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamStep {
    pub lr: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    /// 1-based step count, for the bias corrections `1 - beta^t`.
    pub t: u32,
    /// Clip the gradient to this global L2 norm; 0 disables clipping.
    pub max_grad_norm: f32,
}

/// Adam and exponential moving averages.
pub trait OptimOps: Memory {
    /// One Adam step on flat params with gradient `grad` and moments `m`, `v`. `grad_sumsq[0]` is
    /// `||grad||^2` (from [`LossOps::sum`](super::LossOps::sum)); it drives clipping, and a
    /// non-finite value skips the step, so a NaN never reaches the weights.
    fn adam(
        &self,
        step: &AdamStep,
        params: &BTensor<Self>,
        grad: &BTensor<Self>,
        m: &BTensor<Self>,
        v: &BTensor<Self>,
        grad_sumsq: &BTensor<Self>,
    );
    /// `avg = mu * avg + (1 - mu) * x`.
    fn ema(&self, mu: f32, avg: &BTensor<Self>, x: &BTensor<Self>);
}
