//! Normalizations: GroupNorm (with an optional fused SiLU) and the perceptual distance's
//! normalization across channels (implemented in `cpu/norm.rs` and `gpu/norm.rs`).

use super::{BTensor, Memory};

/// Normalization layers and their gradients.
pub trait NormOps: Memory {
    /// GroupNorm over `groups` groups of x `[N, C, S]` with affine gamma, beta `[C]`, then SiLU
    /// when `silu`. Saves per-(sample, group) mean and 1/std in `stats` `[N, groups, 2]`.
    #[allow(clippy::too_many_arguments)]
    fn group_norm(
        &self,
        groups: usize,
        silu: bool,
        x: &BTensor<Self>,
        gamma: &BTensor<Self>,
        beta: &BTensor<Self>,
        y: &BTensor<Self>,
        stats: &BTensor<Self>,
    );
    /// Gradients of [`NormOps::group_norm`] to x, gamma and beta.
    #[allow(clippy::too_many_arguments)]
    fn group_norm_backward(
        &self,
        groups: usize,
        silu: bool,
        dy: &BTensor<Self>,
        x: &BTensor<Self>,
        gamma: &BTensor<Self>,
        beta: &BTensor<Self>,
        stats: &BTensor<Self>,
        dx: &BTensor<Self>,
        dgamma: &BTensor<Self>,
        dbeta: &BTensor<Self>,
    );
    /// LPIPS's feature normalization (`docs/paper.md#the-perceptual-distance`): x `[N, C, S]` divided
    /// at every (sample, pixel) by its norm across channels, `y = x / (||x[n, :, s]|| + 1e-10)`;
    /// the norms go to r `[N, S]` for the backward.
    fn channel_normalize(&self, x: &BTensor<Self>, y: &BTensor<Self>, r: &BTensor<Self>);
    /// Gradient of [`NormOps::channel_normalize`] to x, from x, its norms r and dy.
    fn channel_normalize_backward(&self, x: &BTensor<Self>, r: &BTensor<Self>, dy: &BTensor<Self>, dx: &BTensor<Self>);
}
