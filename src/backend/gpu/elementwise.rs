//! Elementwise kernels and data movement: SiLU, upsampling, channel copies, broadcast adds,
//! per-sample scale-and-add, the sinusoidal time embedding, the projection of zero-shot editing.

use super::{grid, kernel, params, GpuBackend, GpuTensor, UniformLayout, WORKGROUP};
use crate::backend::{keep_known_geometry, ElementwiseOps};

params! {
    struct Len {
        len: u32,
    }
}

params! {
    /// Parameters of the upsampling kernels: `len` values written, input (dx) height and width.
    struct Upsample {
        len: u32,
        h: u32,
        w: u32,
    }
}

params! {
    struct CopyChannels {
        len: u32,
        run: u32,
        src_stride: u32,
        src_offset: u32,
        dst_stride: u32,
        dst_offset: u32,
        accumulate: u32,
    }
}

params! {
    struct ChannelBias {
        len: u32,
        /// Spatial size H * W.
        s: u32,
    }
}

params! {
    struct ScaleAdd {
        len: u32,
        /// Values per sample.
        d: u32,
    }
}

params! {
    struct Sinusoidal {
        len: u32,
        /// H: features per function (out is `[N, 2H]`).
        half: u32,
    }
}

params! {
    struct KeepKnown {
        len: u32,
        height: u32,
        width: u32,
        tile: u32,
        keep_len: u32,
        inv_area: f32,
    }
}

/// Index math in the kernels is u32.
fn u32_len(len: usize, what: &str) -> u32 {
    u32::try_from(len).unwrap_or_else(|_| panic!("{what}: {len} values exceed u32 indexing"))
}

/// Checks x `[N, C, H, W]` against y `[N, C, 2H, 2W]` and returns the input's geometry.
fn upsample_geometry(x: &[usize], y: &[usize]) -> (u32, u32) {
    assert!(x.len() == 4 && y.len() == 4, "upsample2x: 4-D tensors expected, got {x:?} and {y:?}");
    assert!(
        x[0] == y[0] && x[1] == y[1] && y[2] == 2 * x[2] && y[3] == 2 * x[3],
        "upsample2x: {x:?} does not upsample to {y:?}"
    );
    (x[2] as u32, x[3] as u32)
}

impl ElementwiseOps for GpuBackend {
    fn add(&self, a: &GpuTensor, b: &GpuTensor, out: &GpuTensor) {
        assert!(a.len() == b.len() && a.len() == out.len(), "add: lengths {} {} {}", a.len(), b.len(), out.len());
        self.dispatch(&kernel!("add"), &Len { len: out.len() as u32 }, &[a, b, out], grid(out.len(), WORKGROUP));
    }

    fn silu(&self, x: &GpuTensor, y: &GpuTensor) {
        assert_eq!(x.len(), y.len(), "silu: lengths");
        let len = u32_len(y.len(), "silu");
        self.dispatch(&kernel!("silu_forward", with "silu"), &Len { len }, &[x, y], grid(y.len(), WORKGROUP));
    }

    fn silu_backward(&self, x: &GpuTensor, dy: &GpuTensor, dx: &GpuTensor) {
        assert!(x.len() == dy.len() && x.len() == dx.len(), "silu_backward: lengths");
        let len = u32_len(dx.len(), "silu_backward");
        self.dispatch(&kernel!("silu_backward", with "silu"), &Len { len }, &[x, dy, dx], grid(dx.len(), WORKGROUP));
    }

    fn upsample2x(&self, x: &GpuTensor, y: &GpuTensor) {
        let (h, w) = upsample_geometry(&x.shape, &y.shape);
        let len = u32_len(y.len(), "upsample2x");
        self.dispatch(
            &kernel!("upsample_nearest2x_forward"),
            &Upsample { len, h, w },
            &[x, y],
            grid(y.len(), WORKGROUP),
        );
    }

    fn upsample2x_backward(&self, dy: &GpuTensor, dx: &GpuTensor) {
        let (h, w) = upsample_geometry(&dx.shape, &dy.shape);
        // dy is the larger tensor: its indices must fit in u32 too.
        u32_len(dy.len(), "upsample2x_backward");
        let params = Upsample { len: dx.len() as u32, h, w };
        self.dispatch(&kernel!("upsample_nearest2x_backward"), &params, &[dy, dx], grid(dx.len(), WORKGROUP));
    }

    fn copy_channels(
        &self,
        src: &GpuTensor,
        src_start: usize,
        dst: &GpuTensor,
        dst_start: usize,
        count: usize,
        accumulate: bool,
    ) {
        let (n, cs, cd) = (src.dim(0), src.dim(1), dst.dim(1));
        let s = src.len() / (n * cs);
        assert!(
            dst.dim(0) == n && dst.len() == n * cd * s,
            "copy_channels: src {:?} and dst {:?} differ in batch or spatial size",
            src.shape,
            dst.shape
        );
        assert!(
            src_start + count <= cs && dst_start + count <= cd,
            "copy_channels: channels {src_start}+{count} of {cs} into {dst_start}+{count} of {cd}"
        );
        u32_len(src.len().max(dst.len()), "copy_channels");
        let copied = n * count * s;
        if copied == 0 {
            return;
        }
        let params = CopyChannels {
            len: copied as u32,
            run: (count * s) as u32,
            src_stride: (cs * s) as u32,
            src_offset: (src_start * s) as u32,
            dst_stride: (cd * s) as u32,
            dst_offset: (dst_start * s) as u32,
            accumulate: accumulate as u32,
        };
        self.dispatch(&kernel!("copy_channels"), &params, &[src, dst], grid(copied, WORKGROUP));
    }

    fn add_channel_bias(&self, x: &GpuTensor, e: &GpuTensor, y: &GpuTensor) {
        let (n, c) = (x.dim(0), x.dim(1));
        assert!(
            e.len() == n * c && y.len() == x.len(),
            "add_channel_bias: x {:?}, e {:?}, y {:?}",
            x.shape,
            e.shape,
            y.shape
        );
        let params = ChannelBias { len: u32_len(x.len(), "add_channel_bias"), s: (x.len() / (n * c)) as u32 };
        self.dispatch(&kernel!("add_channel_bias"), &params, &[x, e, y], grid(y.len(), WORKGROUP));
    }

    fn scale_add(&self, alpha: &GpuTensor, x: &GpuTensor, beta: &GpuTensor, y: &GpuTensor, out: &GpuTensor) {
        let n = x.dim(0);
        assert!(
            alpha.len() == n && beta.len() == n && y.len() == x.len() && out.len() == x.len(),
            "scale_add: alpha {:?}, x {:?}, beta {:?}, y {:?}, out {:?}",
            alpha.shape,
            x.shape,
            beta.shape,
            y.shape,
            out.shape
        );
        let params = ScaleAdd { len: u32_len(x.len(), "scale_add"), d: (x.len() / n) as u32 };
        self.dispatch(&kernel!("scale_add"), &params, &[alpha, x, beta, y, out], grid(out.len(), WORKGROUP));
    }

    fn sinusoidal_embedding(&self, c: &GpuTensor, out: &GpuTensor) {
        let n = c.len();
        assert!(
            out.shape.len() == 2 && out.dim(0) == n && out.dim(1).is_multiple_of(2) && out.dim(1) > 0,
            "sinusoidal_embedding: c {:?} into out {:?}",
            c.shape,
            out.shape
        );
        let params = Sinusoidal { len: u32_len(out.len(), "sinusoidal_embedding"), half: (out.dim(1) / 2) as u32 };
        self.dispatch(&kernel!("sinusoidal_embedding"), &params, &[c, out], grid(out.len(), WORKGROUP));
    }

    fn keep_known(&self, patch: usize, x: &GpuTensor, y: &GpuTensor, keep: &GpuTensor, out: &GpuTensor) {
        let (h, w) = keep_known_geometry(patch, &x.shape, &y.shape, &keep.shape, &out.shape);
        if out.is_empty() {
            return;
        }
        let params = KeepKnown {
            len: u32_len(out.len(), "keep_known"),
            height: h as u32,
            width: w as u32,
            tile: patch as u32,
            keep_len: keep.len() as u32,
            inv_area: 1.0 / (patch * patch) as f32,
        };
        self.dispatch(&kernel!("keep_known"), &params, &[x, y, keep, out], grid(out.len(), WORKGROUP));
    }
}

/// The parameters of each kernel here (tests/shader_layout.rs).
pub(super) const UNIFORMS: &[UniformLayout] = &[
    Len::uniform(kernel!("add")),
    Len::uniform(kernel!("silu_forward", with "silu")),
    Len::uniform(kernel!("silu_backward", with "silu")),
    Upsample::uniform(kernel!("upsample_nearest2x_forward")),
    Upsample::uniform(kernel!("upsample_nearest2x_backward")),
    CopyChannels::uniform(kernel!("copy_channels")),
    ChannelBias::uniform(kernel!("add_channel_bias")),
    ScaleAdd::uniform(kernel!("scale_add")),
    Sinusoidal::uniform(kernel!("sinusoidal_embedding")),
    KeepKnown::uniform(kernel!("keep_known")),
];
