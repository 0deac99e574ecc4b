//! Activations, upsampling and data movement: each output value is a function of a few input
//! values (implemented in `cpu/elementwise.rs` and `gpu/elementwise.rs`).

use super::{BTensor, Memory};

/// Elementwise ops and data movement.
pub trait ElementwiseOps: Memory {
    /// `y = x * sigmoid(x)`.
    fn silu(&self, x: &BTensor<Self>, y: &BTensor<Self>);
    fn silu_backward(&self, x: &BTensor<Self>, dy: &BTensor<Self>, dx: &BTensor<Self>);
    /// Nearest-neighbour 2x upsampling of x `[N, C, H, W]` into y `[N, C, 2H, 2W]`.
    fn upsample2x(&self, x: &BTensor<Self>, y: &BTensor<Self>);
    fn upsample2x_backward(&self, dy: &BTensor<Self>, dx: &BTensor<Self>);
    /// Channels `[src_start, src_start + count)` of src `[N, Cs, S]` into channels
    /// `[dst_start, ...)` of dst `[N, Cd, S]`; adds into dst when `accumulate`. Concatenation
    /// along channels is two of these; its backward is two more.
    fn copy_channels(
        &self,
        src: &BTensor<Self>,
        src_start: usize,
        dst: &BTensor<Self>,
        dst_start: usize,
        count: usize,
        accumulate: bool,
    );
    /// `y[n, c, s] = x[n, c, s] + e[n, c]`: a per-sample, per-channel bias such as a time embedding.
    fn add_channel_bias(&self, x: &BTensor<Self>, e: &BTensor<Self>, y: &BTensor<Self>);
    /// `out = a + b`.
    fn add(&self, a: &BTensor<Self>, b: &BTensor<Self>, out: &BTensor<Self>);
    /// `out[n, i] = alpha[n] * x[n, i] + beta[n] * y[n, i]`, per-sample coefficients alpha and
    /// beta `[N]`: `c_skip x + c_out F`, `c_in x`, `x + t z`.
    fn scale_add(
        &self,
        alpha: &BTensor<Self>,
        x: &BTensor<Self>,
        beta: &BTensor<Self>,
        y: &BTensor<Self>,
        out: &BTensor<Self>,
    );
    /// The projection of zero-shot editing (`docs/paper.md#zero-shot-editing-algorithm-4`),
    /// `x <- A^-1[(A y)(1 - Omega) + (A x) Omega]`, for A an orthonormal transform of each
    /// `patch` x `patch` tile whose first coordinate is the tile mean and the known coordinates
    /// `1 - Omega` that mean alone: where `keep > 0.5`, `out = x + (mean_p(y) - mean_p(x))`
    /// (the tile means summed in row-major order, so both backends agree), elsewhere `out = x`.
    /// With `patch = 1` (A = identity: inpainting) a kept value is `y` itself, bit for bit.
    /// x, y, out `[N, C, H, W]` with `patch` dividing H and W; keep is `[N, C, H, W]` (a mask per
    /// sample) or `[1, C, H, W]` (one mask for every sample), 1 = known, 0 = to generate; a
    /// tile is meant to be kept or generated as a whole. out must not alias x or y.
    fn keep_known(&self, patch: usize, x: &BTensor<Self>, y: &BTensor<Self>, keep: &BTensor<Self>, out: &BTensor<Self>);
    /// Sinusoidal features of c `[N]` into out `[N, 2H]`:
    /// `out[n, i] = sin(1000 c[n] 10000^(-i/H))`, `out[n, H + i] = cos(...)`.
    fn sinusoidal_embedding(&self, c: &BTensor<Self>, out: &BTensor<Self>);
}

/// Checks the shapes of [`ElementwiseOps::keep_known`]'s arguments (both backends) and returns
/// (height, width).
pub(crate) fn keep_known_geometry(
    patch: usize,
    x: &[usize],
    y: &[usize],
    keep: &[usize],
    out: &[usize],
) -> (usize, usize) {
    assert!(x.len() == 4 && y == x && out == x, "keep_known: x {x:?}, y {y:?}, out {out:?} must be one [N, C, H, W]");
    let (h, w) = (x[2], x[3]);
    assert!(
        patch > 0 && h.is_multiple_of(patch) && w.is_multiple_of(patch),
        "keep_known: patch {patch} does not tile {h}x{w}"
    );
    assert!(keep == x || keep == [1, x[1], h, w], "keep_known: keep {keep:?} must be {x:?} or [1, {}, {h}, {w}]", x[1]);
    (h, w)
}
