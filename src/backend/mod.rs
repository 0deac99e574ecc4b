//! The one interface every model op goes through. Two implementations sit behind it:
//! [`gpu::GpuBackend`] (our WGSL kernels, through wgpu: Vulkan/Metal/DX12 natively, WebGPU in the
//! browser) and [`cpu::CpuBackend`] (plain Rust: the reference every kernel is tested against,
//! and a fallback where there is no usable GPU).
//!
//! Conventions shared by every op:
//! - images are NCHW, f32, contiguous; a `[N, C, S]` argument is NCHW with `S = H * W`;
//! - outputs are passed in, already allocated with the right shape, and are overwritten
//!   (never accumulated into) unless the op says otherwise;
//! - ops only record work: nothing runs or comes back until [`Backend::read`] (or
//!   [`Backend::flush`]), so a whole training step becomes one submission on the GPU.

pub mod cpu;
pub mod gpu;

use std::future::Future;
use std::ops::Range;

pub use crate::gpu::launcher::WorkCounts;
pub use crate::random::RandomKey;
use crate::tensor::Tensor;

/// Geometry of a 2-D convolution with 'same'-style padding `(k - 1) / 2`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Conv2d {
    pub batch: usize,
    pub in_channels: usize,
    pub out_channels: usize,
    pub height: usize,
    pub width: usize,
    /// Square kernel size: 1 or 3.
    pub kernel: usize,
    /// 1 or 2.
    pub stride: usize,
}

impl Conv2d {
    pub fn pad(&self) -> usize {
        (self.kernel - 1) / 2
    }
    pub fn out_height(&self) -> usize {
        (self.height + 2 * self.pad() - self.kernel) / self.stride + 1
    }
    pub fn out_width(&self) -> usize {
        (self.width + 2 * self.pad() - self.kernel) / self.stride + 1
    }
    pub fn input_shape(&self) -> [usize; 4] {
        [self.batch, self.in_channels, self.height, self.width]
    }
    pub fn output_shape(&self) -> [usize; 4] {
        [self.batch, self.out_channels, self.out_height(), self.out_width()]
    }
    pub fn weight_shape(&self) -> [usize; 4] {
        [self.out_channels, self.in_channels, self.kernel, self.kernel]
    }
    /// Multiply-adds of the forward pass, times two.
    pub fn flops(&self) -> f64 {
        2.0 * (self.batch * self.out_channels * self.out_height() * self.out_width()) as f64
            * (self.in_channels * self.kernel * self.kernel) as f64
    }
}

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

/// Checks the shapes of [`Backend::keep_known`]'s arguments (both backends) and returns
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

pub type BTensor<B> = Tensor<<B as Backend>::Storage>;

pub trait Backend {
    /// Storage of f32 tensors.
    type Storage: Clone;
    /// A read-only byte array (a u8 dataset).
    type Bytes;

    /// Human-readable name of the device (adapter name, or "cpu").
    fn name(&self) -> String;

    // ---- memory --------------------------------------------------------------------------
    /// A new tensor of `shape` whose contents are undefined: for outputs an op overwrites.
    fn empty(&self, shape: &[usize]) -> BTensor<Self>;
    /// A new tensor of `shape`, filled with zeros.
    fn zeros(&self, shape: &[usize]) -> BTensor<Self>;
    /// A new tensor holding `data`.
    fn upload(&self, data: &[f32], shape: &[usize]) -> BTensor<Self>;
    /// Overwrite `dst` with `data` (recorded in order with the other ops).
    fn write(&self, dst: &BTensor<Self>, data: &[f32]);
    /// Copy `src` into `dst` (same length).
    fn copy(&self, src: &BTensor<Self>, dst: &BTensor<Self>);
    /// Rows `rows` of `src` (along its first dimension) as a new tensor: a copy rather than a
    /// view, because a view's offset would have to meet the GPU's binding alignment.
    fn rows(&self, src: &BTensor<Self>, rows: Range<usize>) -> BTensor<Self> {
        let row_len: usize = src.shape[1..].iter().product();
        let mut shape = src.shape.clone();
        shape[0] = rows.len();
        let out = self.empty(&shape);
        self.copy(&src.view(rows.start * row_len, &shape), &out);
        out
    }
    fn upload_bytes(&self, data: &[u8]) -> Self::Bytes;
    /// Run everything recorded so far and return the values of `t`.
    fn read(&self, t: &BTensor<Self>) -> impl Future<Output = crate::Result<Vec<f32>>>;
    /// Start everything recorded so far without waiting for it.
    fn flush(&self);
    /// Kernel dispatches recorded and queue submissions made so far, on a backend with a
    /// device queue (None on the CPU, which runs each op as it is called).
    fn work_counts(&self) -> Option<WorkCounts> {
        None
    }

    // ---- convolution and linear layers ---------------------------------------------------
    /// `y = conv(x, w) + b`; x `[N, Cin, H, W]`, w `[Cout, Cin, k, k]`, b `[Cout]`.
    fn conv2d(&self, g: &Conv2d, x: &BTensor<Self>, w: &BTensor<Self>, b: &BTensor<Self>, y: &BTensor<Self>);
    /// `dx = d(loss)/dx` from `dy`.
    fn conv2d_backward_input(&self, g: &Conv2d, dy: &BTensor<Self>, w: &BTensor<Self>, dx: &BTensor<Self>);
    /// `dw = d(loss)/dw` from `dy` and the layer input `x`.
    fn conv2d_backward_weight(&self, g: &Conv2d, dy: &BTensor<Self>, x: &BTensor<Self>, dw: &BTensor<Self>);
    /// `y = x w^T + b`; x `[N, I]`, w `[O, I]`, b `[O]`, y `[N, O]`.
    fn linear(&self, x: &BTensor<Self>, w: &BTensor<Self>, b: &BTensor<Self>, y: &BTensor<Self>);
    /// `dx = dy w`.
    fn linear_backward_input(&self, dy: &BTensor<Self>, w: &BTensor<Self>, dx: &BTensor<Self>);
    /// `dw = dy^T x`.
    fn linear_backward_weight(&self, dy: &BTensor<Self>, x: &BTensor<Self>, dw: &BTensor<Self>);
    /// Sum of x `[N, C, S]` over N and S into out `[C]` (bias gradients), or over S alone into
    /// out `[N, C]` when `per_sample` (gradient of a per-sample channel bias).
    fn channel_sum(&self, x: &BTensor<Self>, out: &BTensor<Self>, per_sample: bool);

    // ---- normalisation and activations ---------------------------------------------------
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
    /// Gradients of [`Backend::group_norm`] to x, gamma and beta.
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
    /// Gradient of [`Backend::channel_normalize`] to x, from x, its norms r and dy.
    fn channel_normalize_backward(&self, x: &BTensor<Self>, r: &BTensor<Self>, dy: &BTensor<Self>, dx: &BTensor<Self>);
    /// `y = x * sigmoid(x)`.
    fn silu(&self, x: &BTensor<Self>, y: &BTensor<Self>);
    fn silu_backward(&self, x: &BTensor<Self>, dy: &BTensor<Self>, dx: &BTensor<Self>);
    /// Nearest-neighbour 2x upsampling of x `[N, C, H, W]` into y `[N, C, 2H, 2W]`.
    fn upsample2x(&self, x: &BTensor<Self>, y: &BTensor<Self>);
    fn upsample2x_backward(&self, dy: &BTensor<Self>, dx: &BTensor<Self>);

    // ---- elementwise and data movement ---------------------------------------------------
    /// Channels `[src_start, src_start + count)` of src `[N, Cs, S]` into channels
    /// `[dst_start, ...)` of dst `[N, Cd, S]`; adds into dst when `accumulate`. Concatenation
    /// along channels is two of these; its backward is two more.
    #[allow(clippy::too_many_arguments)]
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
    #[allow(clippy::too_many_arguments)]
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

    // ---- losses and reductions -----------------------------------------------------------
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
    #[allow(clippy::too_many_arguments)]
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
    /// [`Backend::random_index`] gives; each rounded to the nearest integer, so labels that went
    /// through float arithmetic still name their class). Computed with the row maximum
    /// subtracted, so huge logits stay finite. A label outside `0..K` (or NaN) gives NaN.
    fn softmax_cross_entropy(&self, logits: &BTensor<Self>, labels: &BTensor<Self>, loss: &BTensor<Self>);
    /// Gradient to the logits of `mean_n loss[n]`: `(softmax(logits[n]) - onehot(c_n)) / N`
    /// into dlogits `[N, K]` (NaN rows for invalid labels, as the forward).
    fn softmax_cross_entropy_backward(&self, logits: &BTensor<Self>, labels: &BTensor<Self>, dlogits: &BTensor<Self>);
    /// `out[0] = scale * sum_i x_i` (or of `x_i^2` when `square`).
    fn sum(&self, x: &BTensor<Self>, out: &BTensor<Self>, square: bool, scale: f32);

    // ---- optimisation --------------------------------------------------------------------
    /// One Adam step on flat params with gradient `grad` and moments `m`, `v`. `grad_sumsq[0]` is
    /// `||grad||^2` (from [`Backend::sum`]); it drives clipping, and a non-finite value skips the
    /// step, so a NaN never reaches the weights.
    #[allow(clippy::too_many_arguments)]
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

    // ---- randomness and data -------------------------------------------------------------
    /// Uniform values in [0, 1).
    fn random_uniform(&self, key: RandomKey, out: &BTensor<Self>);
    /// Standard normal values (Box-Muller).
    fn random_normal(&self, key: RandomKey, out: &BTensor<Self>);
    /// Integers uniform in [0, bound), stored as f32 (exact below 2^24).
    fn random_index(&self, key: RandomKey, bound: u32, out: &BTensor<Self>);
    /// Rows `index[b]` of a u8 dataset of `row_len`-byte rows, scaled to [-1, 1], into
    /// out `[B, row_len]`.
    fn gather_rows(&self, data: &Self::Bytes, row_len: usize, index: &BTensor<Self>, out: &BTensor<Self>);
}
