//! CPU twins of `../gpu/conv.rs`: convolutions and linear layers as sgemm, channel sums.
//!
//! Convolutions work one sample at a time (its scratch stays in cache) with samples spread over
//! rayon's threads:
//! - 3x3 with stride 1 (nearly all of the network's work): the register-blocked kernels of
//!   [`super::direct`];
//! - 1x1: one `matrixmultiply::sgemm` product, the input being the operand itself;
//! - stride 2: im2col and sgemm (the downsampling layers, a small share of the work).
//!
//! sgemm takes row and column strides, so a transposed operand costs nothing.

use std::ops::Range;

use rayon::prelude::*;

use super::math::sum_f64;
use super::simd::Isa;
use super::{data, data_mut, direct, CpuBackend, CpuTensor};
use crate::backend::{Conv2d, ConvOps};

/// `c = alpha a b + beta c`, a `[m, k]`, b `[k, n]`, c `[m, n]`, each given as (slice, row
/// stride, column stride). With beta 0, c need not be initialised.
#[allow(clippy::too_many_arguments)]
fn gemm(
    (m, k, n): (usize, usize, usize),
    (a, rsa, csa): (&[f32], usize, usize),
    (b, rsb, csb): (&[f32], usize, usize),
    beta: f32,
    (c, rsc, csc): (&mut [f32], usize, usize),
) {
    if m == 0 || n == 0 {
        return;
    }
    // The last element each operand reaches must lie inside its slice: this is what makes the
    // unsafe call sound.
    let last = |rows: usize, cols: usize, rs: usize, cs: usize| (rows - 1) * rs + (cols - 1) * cs;
    assert!(c.len() > last(m, n, rsc, csc), "gemm: c too short");
    if k > 0 {
        assert!(a.len() > last(m, k, rsa, csa) && b.len() > last(k, n, rsb, csb), "gemm: operand too short");
    }
    // SAFETY: all three operands are in bounds (checked above); c does not alias a or b (it is a
    // distinct &mut borrow).
    unsafe {
        matrixmultiply::sgemm(
            m,
            k,
            n,
            1.0,
            a.as_ptr(),
            rsa as isize,
            csa as isize,
            b.as_ptr(),
            rsb as isize,
            csb as isize,
            beta,
            c.as_mut_ptr(),
            rsc as isize,
            csc as isize,
        )
    }
}

/// Whether im2col of this geometry is the input itself (1x1, stride 1: no copy needed).
fn is_pointwise(g: &Conv2d) -> bool {
    g.kernel == 1 && g.stride == 1
}

/// Whether this geometry goes to the register-blocked direct kernels (3x3, stride 1).
fn is_direct(g: &Conv2d) -> bool {
    g.kernel == 3 && g.stride == 1
}

/// The output pixels `o` (of `out_len`) that read a real input pixel (not padding) through tap
/// `t` along an axis of `len` pixels: `0 <= o * stride + t - pad < len`.
fn inside(t: usize, g: &Conv2d, len: usize, out_len: usize) -> Range<usize> {
    let start = g.pad().saturating_sub(t).div_ceil(g.stride);
    let end = (len + g.pad()).saturating_sub(t).div_ceil(g.stride).min(out_len);
    start..end.max(start)
}

/// For each tap (ky, kx) of one input plane, the output row range that reads a real input row
/// and the column range that reads a real input column. Rows and columns outside read padding.
fn for_each_tap(g: &Conv2d, mut visit: impl FnMut(usize, Range<usize>, Range<usize>)) {
    let (oh, ow) = (g.out_height(), g.out_width());
    for ky in 0..g.kernel {
        for kx in 0..g.kernel {
            visit(ky * g.kernel + kx, inside(ky, g, g.height, oh), inside(kx, g, g.width, ow));
        }
    }
}

/// im2col of one sample: col `[Cin * k * k, OH * OW]`, row `(ci, ky, kx)` holding the input
/// pixel each output pixel sees through that tap (0 in the padding).
fn im2col(g: &Conv2d, x: &[f32], col: &mut [f32]) {
    let (oh, ow, taps) = (g.out_height(), g.out_width(), g.kernel * g.kernel);
    for (plane, rows) in x.chunks_exact(g.height * g.width).zip(col.chunks_exact_mut(taps * oh * ow)) {
        for_each_tap(g, |tap, ys, xs| {
            let ky = tap / g.kernel;
            let row = &mut rows[tap * oh * ow..(tap + 1) * oh * ow];
            for (oy, out) in row.chunks_exact_mut(ow).enumerate() {
                if !ys.contains(&oy) {
                    out.fill(0.0);
                    continue;
                }
                let first = xs.start * g.stride + tap % g.kernel - g.pad();
                let line = &plane[(oy * g.stride + ky - g.pad()) * g.width..][..g.width];
                out[..xs.start].fill(0.0);
                out[xs.end..].fill(0.0);
                let inner = &mut out[xs.clone()];
                if g.stride == 1 {
                    inner.copy_from_slice(&line[first..first + inner.len()]);
                } else {
                    for (j, v) in inner.iter_mut().enumerate() {
                        *v = line[first + j * g.stride];
                    }
                }
            }
        });
    }
}

/// The adjoint of im2col: adds each entry of col back onto the input pixel it came from.
fn col2im(g: &Conv2d, col: &[f32], dx: &mut [f32]) {
    let (oh, ow, taps) = (g.out_height(), g.out_width(), g.kernel * g.kernel);
    dx.fill(0.0);
    for (plane, rows) in dx.chunks_exact_mut(g.height * g.width).zip(col.chunks_exact(taps * oh * ow)) {
        for_each_tap(g, |tap, ys, xs| {
            let ky = tap / g.kernel;
            let row = &rows[tap * oh * ow..(tap + 1) * oh * ow];
            for oy in ys {
                let first = xs.start * g.stride + tap % g.kernel - g.pad();
                let line = &mut plane[(oy * g.stride + ky - g.pad()) * g.width..][..g.width];
                let inner = &row[oy * ow + xs.start..oy * ow + xs.end];
                if g.stride == 1 {
                    for (d, &v) in line[first..first + inner.len()].iter_mut().zip(inner) {
                        *d += v;
                    }
                } else {
                    for (j, &v) in inner.iter().enumerate() {
                        line[first + j * g.stride] += v;
                    }
                }
            }
        });
    }
}

fn check_lengths(g: &Conv2d, x: usize, w: usize, y: usize) {
    let len = |s: [usize; 4]| s.iter().product::<usize>();
    assert!(
        x == len(g.input_shape()) && w == len(g.weight_shape()) && y == len(g.output_shape()),
        "conv lengths {x} {w} {y} do not match {g:?}"
    );
}

/// The weight gradient splits the batch into this many groups of consecutive samples, each
/// summed into its own partial by one task; the partials are then added in group order. A fixed
/// count (not one per thread) keeps the result independent of the machine's thread count.
const WEIGHT_GRAD_GROUPS: usize = 16;

impl ConvOps for CpuBackend {
    fn conv2d(&self, g: &Conv2d, x: &CpuTensor, w: &CpuTensor, b: &CpuTensor, y: &CpuTensor) {
        let (x, w, b, mut y) = (data(x), data(w), data(b), data_mut(y));
        let (x, w, b, y) = (&*x, &*w, &*b, &mut *y);
        check_lengths(g, x.len(), w.len(), y.len());
        assert_eq!(b.len(), g.out_channels, "conv2d: bias length");
        let (kdim, pixels) = (g.in_channels * g.kernel * g.kernel, g.out_height() * g.out_width());
        if is_direct(g) {
            let (n, cin, cout, h, width) = (g.batch, g.in_channels, g.out_channels, g.height, g.width);
            return direct::forward(Isa::best(), n, cin, cout, h, width, x, w, b, y);
        }
        let x_samples = x.par_chunks_exact(g.in_channels * g.height * g.width);
        y.par_chunks_exact_mut(g.out_channels * pixels).zip(x_samples).for_each_init(
            || vec![0.0; if is_pointwise(g) { 0 } else { kdim * pixels }],
            |col, (y, x)| {
                // Start from the bias so the product can be added onto it (beta = 1).
                for (plane, &bias) in y.chunks_exact_mut(pixels).zip(b) {
                    plane.fill(bias);
                }
                let col: &[f32] = if is_pointwise(g) {
                    x
                } else {
                    im2col(g, x, col);
                    col
                };
                // y [Cout, P] += w [Cout, K] col [K, P]
                gemm((g.out_channels, kdim, pixels), (w, kdim, 1), (col, pixels, 1), 1.0, (y, pixels, 1));
            },
        );
    }

    fn conv2d_backward_input(&self, g: &Conv2d, dy: &CpuTensor, w: &CpuTensor, dx: &CpuTensor) {
        let (dy, w, mut dx) = (data(dy), data(w), data_mut(dx));
        let (dy, w, dx) = (&*dy, &*w, &mut *dx);
        check_lengths(g, dx.len(), w.len(), dy.len());
        let (kdim, pixels) = (g.in_channels * g.kernel * g.kernel, g.out_height() * g.out_width());
        if is_direct(g) {
            let (n, cin, cout, h, width) = (g.batch, g.in_channels, g.out_channels, g.height, g.width);
            return direct::backward_input(Isa::best(), n, cin, cout, h, width, dy, w, dx);
        }
        let dy_samples = dy.par_chunks_exact(g.out_channels * pixels);
        dx.par_chunks_exact_mut(g.in_channels * g.height * g.width).zip(dy_samples).for_each_init(
            || vec![0.0; if is_pointwise(g) { 0 } else { kdim * pixels }],
            |col, (dx, dy)| {
                // col [K, P] = w^T [K, Cout] dy [Cout, P]; w^T is w [Cout, K] read column-major.
                if is_pointwise(g) {
                    // im2col is the identity here, so col is dx itself.
                    gemm((kdim, g.out_channels, pixels), (w, 1, kdim), (dy, pixels, 1), 0.0, (dx, pixels, 1));
                } else {
                    gemm((kdim, g.out_channels, pixels), (w, 1, kdim), (dy, pixels, 1), 0.0, (col, pixels, 1));
                    col2im(g, col, dx);
                }
            },
        );
    }

    fn conv2d_backward_weight(&self, g: &Conv2d, dy: &CpuTensor, x: &CpuTensor, dw: &CpuTensor) {
        let (dy, x, mut dw) = (data(dy), data(x), data_mut(dw));
        let (dy, x, dw) = (&*dy, &*x, &mut *dw);
        check_lengths(g, x.len(), dw.len(), dy.len());
        if is_direct(g) {
            let (n, cin, cout, h, width) = (g.batch, g.in_channels, g.out_channels, g.height, g.width);
            return direct::backward_weight(Isa::best(), n, cin, cout, h, width, dy, x, dw);
        }
        let (kdim, pixels) = (g.in_channels * g.kernel * g.kernel, g.out_height() * g.out_width());
        let (x_len, dy_len) = (g.in_channels * g.height * g.width, g.out_channels * pixels);
        let per_group = g.batch.div_ceil(WEIGHT_GRAD_GROUPS).max(1);
        let groups = g.batch.div_ceil(per_group);
        let partials: Vec<Vec<f32>> = (0..groups)
            .into_par_iter()
            .map(|group| {
                let mut partial = vec![0.0; dw.len()];
                let mut col = vec![0.0; if is_pointwise(g) { 0 } else { kdim * pixels }];
                let samples = group * per_group..((group + 1) * per_group).min(g.batch);
                for s in samples {
                    let (x, dy) = (&x[s * x_len..(s + 1) * x_len], &dy[s * dy_len..(s + 1) * dy_len]);
                    let col: &[f32] = if is_pointwise(g) {
                        x
                    } else {
                        im2col(g, x, &mut col);
                        &col
                    };
                    // partial [Cout, K] += dy [Cout, P] col^T [P, K]
                    gemm(
                        (g.out_channels, pixels, kdim),
                        (dy, pixels, 1),
                        (col, 1, pixels),
                        1.0,
                        (&mut partial, kdim, 1),
                    );
                }
                partial
            })
            .collect();
        dw.fill(0.0);
        for partial in &partials {
            dw.iter_mut().zip(partial).for_each(|(d, p)| *d += p);
        }
    }

    fn linear(&self, x: &CpuTensor, w: &CpuTensor, b: &CpuTensor, y: &CpuTensor) {
        let (n, i, o) = (x.dim(0), x.dim(1), w.dim(0));
        let (x, w, b, mut y) = (data(x), data(w), data(b), data_mut(y));
        let (x, w, b, y) = (&*x, &*w, &*b, &mut *y);
        assert!(x.len() == n * i && w.len() == o * i && b.len() == o && y.len() == n * o, "linear: lengths");
        for row in y.chunks_exact_mut(o) {
            row.copy_from_slice(b);
        }
        // y [n, o] += x [n, i] w^T [i, o]
        gemm((n, i, o), (x, i, 1), (w, 1, i), 1.0, (y, o, 1));
    }

    fn linear_backward_input(&self, dy: &CpuTensor, w: &CpuTensor, dx: &CpuTensor) {
        let (n, i, o) = (dy.dim(0), w.dim(1), w.dim(0));
        let (dy, w, mut dx) = (data(dy), data(w), data_mut(dx));
        let (dy, w, dx) = (&*dy, &*w, &mut *dx);
        assert!(dy.len() == n * o && w.len() == o * i && dx.len() == n * i, "linear_backward_input: lengths");
        // dx [n, i] = dy [n, o] w [o, i]
        gemm((n, o, i), (dy, o, 1), (w, i, 1), 0.0, (dx, i, 1));
    }

    fn linear_backward_weight(&self, dy: &CpuTensor, x: &CpuTensor, dw: &CpuTensor) {
        let (n, i, o) = (dy.dim(0), x.dim(1), dy.dim(1));
        let (dy, x, mut dw) = (data(dy), data(x), data_mut(dw));
        let (dy, x, dw) = (&*dy, &*x, &mut *dw);
        assert!(dy.len() == n * o && x.len() == n * i && dw.len() == o * i, "linear_backward_weight: lengths");
        // dw [o, i] = dy^T [o, n] x [n, i]
        gemm((o, n, i), (dy, 1, o), (x, i, 1), 0.0, (dw, i, 1));
    }

    /// Accumulates in f64: this is the reference the GPU's f32 tree is checked against.
    fn channel_sum(&self, x: &CpuTensor, out: &CpuTensor, per_sample: bool) {
        let (n, c) = (x.dim(0), x.dim(1));
        let s = x.len() / (n * c);
        let (x, mut out) = (data(x), data_mut(out));
        let (x, out) = (&*x, &mut *out);
        assert_eq!(x.len(), n * c * s, "channel_sum: input length");
        if per_sample {
            assert_eq!(out.len(), n * c, "channel_sum: output length");
            if s == 0 {
                out.fill(0.0);
                return;
            }
            // Output o = (sample, channel) sums the contiguous run x[o * s..(o + 1) * s].
            // Eight f64 lanes (sum_f64): one running f64 sum was an add-latency chain per value,
            // about 4% of a CPU training step over the bias gradients.
            out.par_iter_mut().zip(x.par_chunks_exact(s)).for_each(|(o, run)| *o = sum_f64(run, |v| v) as f32);
        } else {
            assert_eq!(out.len(), c, "channel_sum: output length");
            out.par_iter_mut().enumerate().for_each(|(ch, o)| {
                let total: f64 = (0..n).map(|b| sum_f64(&x[(b * c + ch) * s..][..s], |v| v)).sum();
                *o = total as f32;
            });
        }
    }
}
