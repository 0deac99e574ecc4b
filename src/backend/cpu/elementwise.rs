//! CPU twins of `../gpu/elementwise.rs`.

use rayon::prelude::*;

use super::math::{sigmoid, silu_grad};
use super::{data, data_mut, CpuBackend, CpuTensor};
use crate::backend::{keep_known_geometry, ElementwiseOps};

/// Elements per rayon task of the elementwise ops: enough that scheduling costs nothing next to
/// the arithmetic, and a plain inner loop that vectorizes.
const CHUNK: usize = 1 << 12;

impl ElementwiseOps for CpuBackend {
    fn add(&self, a: &CpuTensor, b: &CpuTensor, out: &CpuTensor) {
        let (a, b, mut out) = (data(a), data(b), data_mut(out));
        let (a, b, out) = (&*a, &*b, &mut *out);
        assert!(a.len() == b.len() && a.len() == out.len());
        out.par_chunks_mut(CHUNK).zip(a.par_chunks(CHUNK).zip(b.par_chunks(CHUNK))).for_each(|(o, (a, b))| {
            o.iter_mut().zip(a.iter().zip(b)).for_each(|(o, (a, b))| *o = a + b);
        });
    }

    fn silu(&self, x: &CpuTensor, y: &CpuTensor) {
        let (x, mut y) = (data(x), data_mut(y));
        let (x, y) = (&*x, &mut *y);
        assert_eq!(x.len(), y.len());
        y.par_chunks_mut(CHUNK).zip(x.par_chunks(CHUNK)).for_each(|(y, x)| {
            y.iter_mut().zip(x).for_each(|(y, &x)| *y = x * sigmoid(x));
        });
    }

    fn silu_backward(&self, x: &CpuTensor, dy: &CpuTensor, dx: &CpuTensor) {
        let (x, dy, mut dx) = (data(x), data(dy), data_mut(dx));
        let (x, dy, dx) = (&*x, &*dy, &mut *dx);
        assert!(x.len() == dy.len() && x.len() == dx.len());
        dx.par_chunks_mut(CHUNK).zip(x.par_chunks(CHUNK).zip(dy.par_chunks(CHUNK))).for_each(|(dx, (x, dy))| {
            dx.iter_mut().zip(x.iter().zip(dy)).for_each(|(dx, (&x, &dy))| *dx = dy * silu_grad(x));
        });
    }

    fn upsample2x(&self, x: &CpuTensor, y: &CpuTensor) {
        let (planes, h, w) = (x.dim(0) * x.dim(1), x.dim(2), x.dim(3));
        let (x, mut y) = (data(x), data_mut(y));
        let (x, y) = (&*x, &mut *y);
        assert!(x.len() == planes * h * w && y.len() == 4 * x.len());
        if x.is_empty() {
            return;
        }
        y.par_chunks_mut(4 * h * w).zip(x.par_chunks(h * w)).for_each(|(y, x)| {
            for (oy, row) in y.chunks_mut(2 * w).enumerate() {
                for (ox, v) in row.iter_mut().enumerate() {
                    *v = x[(oy / 2) * w + ox / 2];
                }
            }
        });
    }

    fn upsample2x_backward(&self, dy: &CpuTensor, dx: &CpuTensor) {
        let (planes, h, w) = (dx.dim(0) * dx.dim(1), dx.dim(2), dx.dim(3));
        let (dy, mut dx) = (data(dy), data_mut(dx));
        let (dy, dx) = (&*dy, &mut *dx);
        assert!(dx.len() == planes * h * w && dy.len() == 4 * dx.len());
        if dx.is_empty() {
            return;
        }
        let ow = 2 * w;
        dx.par_chunks_mut(h * w).zip(dy.par_chunks(4 * h * w)).for_each(|(dx, dy)| {
            for iy in 0..h {
                for ix in 0..w {
                    let top = 2 * iy * ow + 2 * ix;
                    // Same order of additions as the kernel, so both give identical sums.
                    dx[iy * w + ix] = (dy[top] + dy[top + 1]) + (dy[top + ow] + dy[top + ow + 1]);
                }
            }
        });
    }

    fn copy_channels(
        &self,
        src: &CpuTensor,
        src_start: usize,
        dst: &CpuTensor,
        dst_start: usize,
        count: usize,
        accumulate: bool,
    ) {
        let (n, src_channels, dst_channels) = (src.dim(0), src.dim(1), dst.dim(1));
        let s = src.len() / (n * src_channels);
        let (src, mut dst) = (data(src), data_mut(dst));
        let (src, dst) = (&*src, &mut *dst);
        assert!(src_start + count <= src_channels && dst_start + count <= dst_channels);
        assert!(src.len() == n * src_channels * s && dst.len() == n * dst_channels * s);
        let run = count * s;
        if run == 0 {
            return;
        }
        // Per sample, the copied channels are one contiguous run in both tensors.
        dst.par_chunks_mut(dst_channels * s).zip(src.par_chunks(src_channels * s)).for_each(|(dst, src)| {
            let from = &src[src_start * s..src_start * s + run];
            let to = &mut dst[dst_start * s..dst_start * s + run];
            if accumulate {
                to.iter_mut().zip(from).for_each(|(d, v)| *d += v);
            } else {
                to.copy_from_slice(from);
            }
        });
    }

    fn add_channel_bias(&self, x: &CpuTensor, e: &CpuTensor, y: &CpuTensor) {
        // x `[planes, s]` plus e `[planes]`.
        let planes = x.dim(0) * x.dim(1);
        let s = x.len() / planes;
        let (x, e, mut y) = (data(x), data(e), data_mut(y));
        let (x, e, y) = (&*x, &*e, &mut *y);
        assert!(x.len() == planes * s && e.len() == planes && y.len() == x.len());
        if s == 0 {
            return;
        }
        y.par_chunks_mut(s).zip(x.par_chunks(s)).zip(e.par_iter()).for_each(|((y, x), &e)| {
            y.iter_mut().zip(x).for_each(|(y, &x)| *y = x + e);
        });
    }

    fn scale_add(&self, alpha: &CpuTensor, x: &CpuTensor, beta: &CpuTensor, y: &CpuTensor, out: &CpuTensor) {
        let n = x.dim(0);
        let (alpha, x, beta, y, mut out) = (data(alpha), data(x), data(beta), data(y), data_mut(out));
        let (alpha, x, beta, y, out) = (&*alpha, &*x, &*beta, &*y, &mut *out);
        assert!(alpha.len() == n && beta.len() == n && y.len() == x.len() && out.len() == x.len());
        if out.is_empty() {
            return;
        }
        let d = x.len() / n;
        out.par_chunks_mut(d).zip(x.par_chunks(d).zip(y.par_chunks(d))).enumerate().for_each(|(i, (out, (x, y)))| {
            let (a, b) = (alpha[i], beta[i]);
            out.iter_mut().zip(x.iter().zip(y)).for_each(|(o, (&x, &y))| *o = a * x + b * y);
        });
    }

    fn sinusoidal_embedding(&self, c: &CpuTensor, out: &CpuTensor) {
        let half = out.dim(1) / 2;
        let (c, mut out) = (data(c), data_mut(out));
        assert_eq!(out.len(), c.len() * 2 * half);
        if half == 0 {
            return;
        }
        // The frequency and the argument are computed in f32 with the kernel's operations, so both
        // backends evaluate sin/cos at (nearly) the same point; the arguments reach ~1600 rad, where
        // one f32 ulp is ~1e-4 rad, so computing them in f64 here would not be a better reference
        // for what the GPU can do, only a different one.
        for (row, &c) in out.chunks_mut(2 * half).zip(c.iter()) {
            let (sin, cos) = row.split_at_mut(half);
            for i in 0..half {
                let freq = (-LN_10000 * i as f32 / half as f32).exp();
                let arg = 1000.0 * c * freq;
                sin[i] = arg.sin();
                cos[i] = arg.cos();
            }
        }
    }

    /// x, y, out `[planes, h, w]`; keep read at `i % keep.len()` (per value, or one sample's masks
    /// for every sample). The kernel's arithmetic in the kernel's order: per tile, `sum (y - x)` in f32
    /// row-major, then `x + sum * (1 / p^2)`.
    fn keep_known(&self, patch: usize, x: &CpuTensor, y: &CpuTensor, keep: &CpuTensor, out: &CpuTensor) {
        let (h, w) = keep_known_geometry(patch, &x.shape, &y.shape, &keep.shape, &out.shape);
        let (x, y, keep, mut out) = (data(x), data(y), data(keep), data_mut(out));
        let (x, y, keep, out) = (&*x, &*y, &*keep, &mut *out);
        assert!(
            x.len() == out.len()
                && y.len() == out.len()
                && patch > 0
                && h.is_multiple_of(patch)
                && w.is_multiple_of(patch)
        );
        let plane = h * w;
        if out.is_empty() {
            return;
        }
        assert!(
            plane > 0 && out.len().is_multiple_of(plane) && !keep.is_empty() && out.len().is_multiple_of(keep.len())
        );
        let inv_area = 1.0 / (patch * patch) as f32;
        out.par_chunks_mut(plane).enumerate().for_each(|(k, out)| {
            let start = k * plane;
            let (x, y) = (&x[start..start + plane], &y[start..start + plane]);
            for (s, o) in out.iter_mut().enumerate() {
                let known = keep[(start + s) % keep.len()];
                // Binary, as in the kernel: NaN is not above one half.
                *o = if known <= 0.5 || known.is_nan() {
                    x[s]
                } else if patch == 1 {
                    y[s]
                } else {
                    let (top, left) = (s / w / patch * patch, s % w / patch * patch);
                    let mut diff = 0.0f32;
                    for r in top..top + patch {
                        for c in left..left + patch {
                            diff += y[r * w + c] - x[r * w + c];
                        }
                    }
                    x[s] + diff * inv_area
                };
            }
        });
    }
}

/// `ln(10000)` = 9.21034037..., rounded to f32 as the kernel's constant is.
const LN_10000: f32 = 9.210_340_5;
