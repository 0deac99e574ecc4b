//! Group normalisation (with an optional fused SiLU) and its backward pass.

use super::{grid, kernel, params, GpuBackend, GpuTensor, UniformLayout, WORKGROUP};
use crate::backend::NormOps;

/// Added to the group variance before the square root (PyTorch's default; the CPU twin uses the same).
const EPS: f32 = 1e-5;

params! {
    struct Forward {
        /// (sample, group) pairs, one workgroup each.
        count: u32,
        groups: u32,
        /// Channels per group.
        cpg: u32,
        /// Spatial size H * W.
        s: u32,
        silu: u32,
        eps: f32,
    }
}

params! {
    struct Backward {
        batch: u32,
        channels: u32,
        groups: u32,
        cpg: u32,
        s: u32,
        silu: u32,
    }
}

/// (N, C, S) of x `[N, C, ...]`, checked against `groups` and the stats shape.
fn geometry(
    groups: usize,
    x: &GpuTensor,
    gamma: &GpuTensor,
    beta: &GpuTensor,
    stats: &GpuTensor,
) -> (usize, usize, usize) {
    let (n, c) = (x.dim(0), x.dim(1));
    assert!(groups > 0 && c.is_multiple_of(groups), "group_norm: {c} channels do not split into {groups} groups");
    assert!(
        gamma.len() == c && beta.len() == c,
        "group_norm: gamma {:?} / beta {:?} for {c} channels",
        gamma.shape,
        beta.shape
    );
    assert_eq!(stats.len(), n * groups * 2, "group_norm: stats {:?} for {n} samples, {groups} groups", stats.shape);
    assert!(x.len() <= u32::MAX as usize, "group_norm: {} values exceed u32 indexing", x.len());
    (n, c, x.len() / (n * c))
}

params! {
    /// Mirrors `Params` in shaders/channel_normalize_params.wgsl.
    struct Normalize {
        n: u32,
        c: u32,
        s: u32,
    }
}

fn normalize_params(x: &GpuTensor, r: &GpuTensor) -> Normalize {
    let (n, c) = (x.dim(0), x.dim(1));
    let s = x.len() / (n * c);
    assert_eq!(r.len(), n * s, "channel_normalize: r {:?} for x {:?}", r.shape, x.shape);
    assert!(x.len() <= u32::MAX as usize, "channel_normalize: {} values exceed u32 indexing", x.len());
    Normalize { n: n as u32, c: c as u32, s: s as u32 }
}

impl NormOps for GpuBackend {
    fn group_norm(
        &self,
        groups: usize,
        silu: bool,
        x: &GpuTensor,
        gamma: &GpuTensor,
        beta: &GpuTensor,
        y: &GpuTensor,
        stats: &GpuTensor,
    ) {
        let (n, c, s) = geometry(groups, x, gamma, beta, stats);
        assert_eq!(y.len(), x.len(), "group_norm: y {:?} for x {:?}", y.shape, x.shape);
        let params = Forward {
            count: (n * groups) as u32,
            groups: groups as u32,
            cpg: (c / groups) as u32,
            s: s as u32,
            silu: silu as u32,
            eps: EPS,
        };
        // One workgroup per (sample, group): grid's one item per workgroup.
        self.dispatch(
            &kernel!("group_norm_forward", with "silu", "workgroup_sum"),
            &params,
            &[x, gamma, beta, y, stats],
            grid(n * groups, 1),
        );
    }

    fn group_norm_backward(
        &self,
        groups: usize,
        silu: bool,
        dy: &GpuTensor,
        x: &GpuTensor,
        gamma: &GpuTensor,
        beta: &GpuTensor,
        stats: &GpuTensor,
        dx: &GpuTensor,
        dgamma: &GpuTensor,
        dbeta: &GpuTensor,
    ) {
        let (n, c, s) = geometry(groups, x, gamma, beta, stats);
        assert!(
            dy.len() == x.len() && dx.len() == x.len(),
            "group_norm_backward: dy {:?}, dx {:?} for x {:?}",
            dy.shape,
            dx.shape,
            x.shape
        );
        assert!(
            dgamma.len() == c && dbeta.len() == c,
            "group_norm_backward: dgamma {:?} / dbeta {:?}",
            dgamma.shape,
            dbeta.shape
        );
        let params = Backward {
            batch: n as u32,
            channels: c as u32,
            groups: groups as u32,
            cpg: (c / groups) as u32,
            s: s as u32,
            silu: silu as u32,
        };
        // The binding order is the shader's: inputs 1-5, then the entry point's outputs.
        self.dispatch(
            &kernel!("group_norm_backward", entry = "input_grad", with "silu", "workgroup_sum"),
            &params,
            &[dy, x, gamma, beta, stats, dx],
            grid(n * groups, 1),
        );
        self.dispatch(
            &kernel!("group_norm_backward", entry = "affine_grad", with "silu", "workgroup_sum"),
            &params,
            &[dy, x, gamma, beta, stats, dgamma, dbeta],
            grid(c, 1),
        );
    }

    fn channel_normalize(&self, x: &GpuTensor, y: &GpuTensor, r: &GpuTensor) {
        assert_eq!(y.len(), x.len(), "channel_normalize: y {:?} for x {:?}", y.shape, x.shape);
        let p = normalize_params(x, r);
        self.dispatch(
            &kernel!("channel_normalize_forward", with "channel_normalize_params"),
            &p,
            &[x, y, r],
            grid(r.len(), WORKGROUP),
        );
    }

    fn channel_normalize_backward(&self, x: &GpuTensor, r: &GpuTensor, dy: &GpuTensor, dx: &GpuTensor) {
        assert!(dy.len() == x.len() && dx.len() == x.len(), "channel_normalize_backward: dy, dx for x {:?}", x.shape);
        let p = normalize_params(x, r);
        self.dispatch(
            &kernel!("channel_normalize_backward", with "channel_normalize_params"),
            &p,
            &[x, r, dy, dx],
            grid(r.len(), WORKGROUP),
        );
    }
}

/// The parameters of each kernel here (tests/shader_layout.rs).
pub(super) const UNIFORMS: &[UniformLayout] = &[
    Forward::uniform(kernel!("group_norm_forward", with "silu", "workgroup_sum")),
    Backward::uniform(kernel!("group_norm_backward", entry = "input_grad", with "silu", "workgroup_sum")),
    Normalize::uniform(kernel!("channel_normalize_forward", with "channel_normalize_params")),
    Normalize::uniform(kernel!("channel_normalize_backward", with "channel_normalize_params")),
];
