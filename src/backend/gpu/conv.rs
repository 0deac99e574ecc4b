//! Convolutions and linear layers as tiled GEMMs (`shaders/gemm_tile.wgsl` is the shared core;
//! each kernel supplies how to load A and B and where to store C), and the channel sums that
//! give their bias gradients.

use super::{grid, kernel, params, GpuBackend, GpuTensor, UniformLayout, MAX_GROUPS, WORKGROUP};
use crate::backend::{Conv2d, ConvOps};

/// Tile of C one GEMM workgroup computes (`GEMM_TM` x `GEMM_TN` in gemm_tile.wgsl), and the
/// depth of one step along K (`GEMM_TK`), which split-K slices must be a multiple of.
const TILE_M: usize = 32;
const TILE_N: usize = 64;
const TILE_K: usize = 16;

/// Split-K of the weight gradient: aim for this many workgroups in flight...
const SPLIT_TARGET_GROUPS: usize = 256;
/// ...but give each slice at least this many K values, so the partial sums written and summed
/// afterwards stay small next to the inputs read...
const SPLIT_MIN_K: usize = 512;
/// ...and keep the reduction over slices short (channel_sum's one-invocation-per-output path).
const MAX_SPLITS: usize = 64;

params! {
    /// Mirrors `Params` in shaders/conv2d_params.wgsl.
    struct ConvParams {
        batch: u32,
        in_channels: u32,
        out_channels: u32,
        height: u32,
        width: u32,
        out_height: u32,
        out_width: u32,
        kernel: u32,
        stride: u32,
        pad: u32,
        k_per_split: u32,
    }
}

impl ConvParams {
    fn new(g: &Conv2d, k_per_split: usize) -> Self {
        ConvParams {
            batch: g.batch as u32,
            in_channels: g.in_channels as u32,
            out_channels: g.out_channels as u32,
            height: g.height as u32,
            width: g.width as u32,
            out_height: g.out_height() as u32,
            out_width: g.out_width() as u32,
            kernel: g.kernel as u32,
            stride: g.stride as u32,
            pad: g.pad() as u32,
            k_per_split: k_per_split as u32,
        }
    }
}

params! {
    /// Mirrors `Params` of matmul.wgsl.
    struct MatmulParams {
        m: u32,
        n: u32,
        k: u32,
        a_stride_m: u32,
        a_stride_k: u32,
        b_stride_k: u32,
        b_stride_n: u32,
        has_bias: u32,
    }
}

params! {
    /// Mirrors `Params` of channel_sum.wgsl.
    struct ChannelSumParams {
        n: u32,
        c: u32,
        s: u32,
        per_sample: u32,
    }
}

/// Workgroups of a GEMM of `m` x `n` over `splits` slices of K.
fn gemm_groups(m: usize, n: usize, splits: usize) -> [u32; 3] {
    let groups = [n.div_ceil(TILE_N), m.div_ceil(TILE_M), splits];
    assert!(
        groups.iter().all(|&g| g <= MAX_GROUPS as usize),
        "GEMM of {m} x {n} in {splits} slices needs {groups:?} workgroups, over the per-dimension limit"
    );
    groups.map(|g| g.max(1) as u32)
}

/// Split-K of a GEMM with `tiles` output tiles and depth `k`: (slices, K values per slice).
/// Slices hold a multiple of `TILE_K` values (so no tile straddles two slices), and none is empty.
fn split_k(tiles: usize, k: usize) -> (usize, usize) {
    let wanted = SPLIT_TARGET_GROUPS.div_ceil(tiles.max(1)).min(k / SPLIT_MIN_K).clamp(1, MAX_SPLITS);
    if wanted == 1 {
        return (1, k);
    }
    let per_split = k.div_ceil(wanted).next_multiple_of(TILE_K);
    (k.div_ceil(per_split), per_split)
}

fn check_shapes(what: &str, g: &Conv2d, x: &GpuTensor, w: &GpuTensor, y: &GpuTensor) {
    let len = |s: [usize; 4]| s.iter().product::<usize>();
    assert!(
        x.len() == len(g.input_shape()) && w.len() == len(g.weight_shape()) && y.len() == len(g.output_shape()),
        "{what}: lengths {} {} {} do not match {g:?}",
        x.len(),
        w.len(),
        y.len()
    );
    assert!(g.kernel % 2 == 1 && g.stride >= 1, "{what}: unsupported {g:?}");
}

/// `c = a b (+ bias)` with a `[m, k]` and b `[k, n]` given by element strides.
#[allow(clippy::too_many_arguments)]
fn matmul(
    be: &GpuBackend,
    (m, n, k): (usize, usize, usize),
    a: &GpuTensor,
    (a_stride_m, a_stride_k): (usize, usize),
    b: &GpuTensor,
    (b_stride_k, b_stride_n): (usize, usize),
    bias: Option<&GpuTensor>,
    c: &GpuTensor,
) {
    assert!(a.len() == m * k && b.len() == k * n && c.len() == m * n, "matmul: lengths do not match {m}x{k}x{n}");
    let params = MatmulParams {
        m: m as u32,
        n: n as u32,
        k: k as u32,
        a_stride_m: a_stride_m as u32,
        a_stride_k: a_stride_k as u32,
        b_stride_k: b_stride_k as u32,
        b_stride_n: b_stride_n as u32,
        has_bias: bias.is_some() as u32,
    };
    // Without a bias the kernel still declares the binding; `a` fills it, unread.
    be.dispatch(&kernel!("matmul", with "gemm_tile"), &params, &[a, b, bias.unwrap_or(a), c], gemm_groups(m, n, 1));
}

/// Runs shorter than this are summed by one invocation each (see channel_sum.wgsl).
const PER_THREAD_RUN: usize = 64;

impl ConvOps for GpuBackend {
    fn conv2d(&self, g: &Conv2d, x: &GpuTensor, w: &GpuTensor, b: &GpuTensor, y: &GpuTensor) {
        check_shapes("conv2d", g, x, w, y);
        assert_eq!(b.len(), g.out_channels, "conv2d: bias length");
        let (m, n, k) = (g.out_channels, g.batch * g.out_height() * g.out_width(), g.in_channels * g.kernel * g.kernel);
        self.dispatch(
            &kernel!("conv2d_forward", with "conv2d_params", "gemm_tile"),
            &ConvParams::new(g, k),
            &[x, w, b, y],
            gemm_groups(m, n, 1),
        );
    }

    fn conv2d_backward_input(&self, g: &Conv2d, dy: &GpuTensor, w: &GpuTensor, dx: &GpuTensor) {
        check_shapes("conv2d_backward_input", g, dx, w, dy);
        // The kernel divides by the stride with a shift.
        assert!(g.stride.is_power_of_two(), "conv2d_backward_input: stride {} is not a power of two", g.stride);
        let (m, n, k) = (g.in_channels, g.batch * g.height * g.width, g.out_channels * g.kernel * g.kernel);
        self.dispatch(
            &kernel!("conv2d_backward_input", with "conv2d_params", "gemm_tile"),
            &ConvParams::new(g, k),
            &[dy, w, dx],
            gemm_groups(m, n, 1),
        );
    }

    fn conv2d_backward_weight(&self, g: &Conv2d, dy: &GpuTensor, x: &GpuTensor, dw: &GpuTensor) {
        check_shapes("conv2d_backward_weight", g, x, dw, dy);
        let (m, n, k) = (g.out_channels, g.in_channels * g.kernel * g.kernel, g.batch * g.out_height() * g.out_width());
        let kernel = kernel!("conv2d_backward_weight", with "conv2d_params", "gemm_tile");
        // M and N are small and K long: slice K so enough workgroups run, then sum the slices.
        let (splits, per_split) = split_k(m.div_ceil(TILE_M) * n.div_ceil(TILE_N), k);
        let params = ConvParams::new(g, per_split);
        if splits == 1 {
            self.dispatch(&kernel, &params, &[dy, x, dw], gemm_groups(m, n, 1));
        } else {
            let partials = self.empty(&[splits, m * n, 1]);
            self.dispatch(&kernel, &params, &[dy, x, &partials], gemm_groups(m, n, splits));
            self.channel_sum(&partials, dw, false);
        }
    }

    fn linear(&self, x: &GpuTensor, w: &GpuTensor, b: &GpuTensor, y: &GpuTensor) {
        let (n, i, o) = (x.dim(0), x.dim(1), w.dim(0));
        assert_eq!(b.len(), o, "linear: bias length");
        // y [n, o] = x [n, i] w^T, where w^T [i, o] is w [o, i] with swapped strides.
        matmul(self, (n, o, i), x, (i, 1), w, (1, i), Some(b), y);
    }

    fn linear_backward_input(&self, dy: &GpuTensor, w: &GpuTensor, dx: &GpuTensor) {
        let (n, i, o) = (dy.dim(0), w.dim(1), w.dim(0));
        // dx [n, i] = dy [n, o] w [o, i].
        matmul(self, (n, i, o), dy, (o, 1), w, (i, 1), None, dx);
    }

    fn linear_backward_weight(&self, dy: &GpuTensor, x: &GpuTensor, dw: &GpuTensor) {
        let (n, i, o) = (dy.dim(0), x.dim(1), dy.dim(1));
        // dw [o, i] = dy^T [o, n] x [n, i].
        matmul(self, (o, i, n), dy, (1, o), x, (i, 1), None, dw);
    }

    fn channel_sum(&self, x: &GpuTensor, out: &GpuTensor, per_sample: bool) {
        let (n, c) = (x.dim(0), x.dim(1));
        let s = x.len() / (n * c);
        let (outputs, run) = if per_sample { (n * c, s) } else { (c, n * s) };
        assert_eq!(out.len(), outputs, "channel_sum: output length");
        let params = ChannelSumParams { n: n as u32, c: c as u32, s: s as u32, per_sample: per_sample as u32 };
        if run <= PER_THREAD_RUN {
            self.dispatch(
                &kernel!("channel_sum", entry = "per_thread", with "workgroup_sum"),
                &params,
                &[x, out],
                grid(outputs, WORKGROUP),
            );
        } else {
            self.dispatch(&kernel!("channel_sum", with "workgroup_sum"), &params, &[x, out], grid(outputs, 1));
        }
    }
}

/// The parameters of each kernel here (tests/shader_layout.rs).
pub(super) const UNIFORMS: &[UniformLayout] = &[
    ConvParams::uniform(kernel!("conv2d_forward", with "conv2d_params", "gemm_tile")),
    ConvParams::uniform(kernel!("conv2d_backward_input", with "conv2d_params", "gemm_tile")),
    ConvParams::uniform(kernel!("conv2d_backward_weight", with "conv2d_params", "gemm_tile")),
    MatmulParams::uniform(kernel!("matmul", with "gemm_tile")),
    ChannelSumParams::uniform(kernel!("channel_sum", with "workgroup_sum")),
];
