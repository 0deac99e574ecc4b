//! Per-sample weighted losses, their gradients, and sum reductions.

use super::{grid, kernel, params, GpuBackend, GpuTensor, UniformLayout, WORKGROUP};
use crate::backend::{LossOps, Metric};

params! {
    /// Mirrors `Params` in shaders/loss_params.wgsl.
    struct LossParams {
        n: u32,
        d: u32,
        metric: u32,
        c: f32,
    }
}

impl LossParams {
    fn new(metric: Metric, pred: &GpuTensor) -> Self {
        let n = pred.dim(0);
        let (metric, c) = match metric {
            Metric::L2 => (0, 0.0),
            Metric::L1 => (1, 0.0),
            Metric::PseudoHuber { c } => (2, c),
        };
        LossParams { n: n as u32, d: (pred.len() / n) as u32, metric, c }
    }
}

params! {
    /// Mirrors `Params` of `sum_reduce.wgsl`.
    struct SumParams {
        len: u32,
        square: u32,
        scale: f32,
    }
}

/// Workgroups of the first pass at most: the second pass then reads one partial per thread.
/// With 256 x 256 threads, a million values are about 15 per thread.
const SUM_GROUPS: usize = WORKGROUP as usize;

params! {
    /// Mirrors `Params` of `softmax_cross_entropy.wgsl`.
    struct SoftmaxCrossEntropyParams {
        n: u32,
        k: u32,
        /// The bits of a quiet NaN, written for an invalid label. A NaN literal in WGSL is a
        /// constant-expression error in Chrome's shader compiler, so it comes in at run time.
        nan_bits: u32,
    }
}

impl SoftmaxCrossEntropyParams {
    fn new(n: usize, k: usize) -> Self {
        SoftmaxCrossEntropyParams { n: n as u32, k: k as u32, nan_bits: f32::NAN.to_bits() }
    }
}

/// (N, K) of logits `[N, K]`, checked against labels `[N]` and the output's length.
fn cross_entropy_shape(logits: &GpuTensor, labels: &GpuTensor, out: &GpuTensor, out_len: usize) -> (usize, usize) {
    let n = logits.dim(0);
    let k = logits.len() / n.max(1);
    assert!(n > 0 && k > 0 && logits.len() == n * k, "softmax_cross_entropy: logits must be [N, K]");
    assert_eq!(labels.len(), n, "softmax_cross_entropy: labels must be [{n}]");
    assert_eq!(out.len(), out_len, "softmax_cross_entropy: output length");
    (n, k)
}

impl LossOps for GpuBackend {
    fn loss(
        &self,
        metric: Metric,
        pred: &GpuTensor,
        target: &GpuTensor,
        weight: &GpuTensor,
        loss: &GpuTensor,
        stats: &GpuTensor,
    ) {
        let n = pred.dim(0);
        assert_eq!(pred.len(), target.len(), "loss: pred and target lengths");
        assert!(weight.len() == n && loss.len() == n && stats.len() == n, "loss: weight, loss and stats must be [{n}]");
        let p = LossParams::new(metric, pred);
        // One workgroup per sample.
        self.dispatch(
            &kernel!("loss_forward", with "loss_params", "workgroup_sum"),
            &p,
            &[pred, target, weight, loss, stats],
            grid(n, 1),
        );
    }

    fn loss_backward(
        &self,
        metric: Metric,
        pred: &GpuTensor,
        target: &GpuTensor,
        weight: &GpuTensor,
        stats: &GpuTensor,
        dpred: &GpuTensor,
    ) {
        let n = pred.dim(0);
        assert!(pred.len() == target.len() && pred.len() == dpred.len(), "loss_backward: pred, target, dpred lengths");
        assert!(weight.len() == n && stats.len() == n, "loss_backward: weight and stats must be [{n}]");
        let p = LossParams::new(metric, pred);
        self.dispatch(
            &kernel!("loss_backward", with "loss_params"),
            &p,
            &[pred, target, weight, stats, dpred],
            grid(pred.len(), WORKGROUP),
        );
    }

    fn sum(&self, x: &GpuTensor, out: &GpuTensor, square: bool, scale: f32) {
        assert!(!out.is_empty(), "sum: out must hold one value");
        let out = &out.view(0, &[1]);
        let len = x.len();
        let groups = len.div_ceil(WORKGROUP as usize).clamp(1, SUM_GROUPS);
        let kernel = kernel!("sum_reduce", with "workgroup_sum");
        if groups == 1 {
            // One workgroup covers it all: the first pass is already the total.
            let p = SumParams { len: len as u32, square: square as u32, scale };
            self.dispatch(&kernel, &p, &[x, out], [1, 1, 1]);
            return;
        }
        // The partials only live until the second pass; dropping the tensor returns its buffer to
        // the pool, which is safe because later uses are recorded after this one.
        let partials = self.empty(&[groups]);
        let first = SumParams { len: len as u32, square: square as u32, scale: 1.0 };
        self.dispatch(&kernel, &first, &[x, &partials], [groups as u32, 1, 1]);
        let second = SumParams { len: groups as u32, square: 0, scale };
        self.dispatch(&kernel, &second, &[&partials, out], [1, 1, 1]);
    }

    fn softmax_cross_entropy(&self, logits: &GpuTensor, labels: &GpuTensor, loss: &GpuTensor) {
        let (n, k) = cross_entropy_shape(logits, labels, loss, logits.dim(0));
        let p = SoftmaxCrossEntropyParams::new(n, k);
        // One invocation per sample.
        self.dispatch(
            &kernel!("softmax_cross_entropy", entry = "forward"),
            &p,
            &[logits, labels, loss],
            grid(n, WORKGROUP),
        );
    }

    fn softmax_cross_entropy_backward(&self, logits: &GpuTensor, labels: &GpuTensor, dlogits: &GpuTensor) {
        let (n, k) = cross_entropy_shape(logits, labels, dlogits, logits.len());
        let p = SoftmaxCrossEntropyParams::new(n, k);
        self.dispatch(
            &kernel!("softmax_cross_entropy", entry = "backward"),
            &p,
            &[logits, labels, dlogits],
            grid(n, WORKGROUP),
        );
    }
}

/// The parameters of each kernel here (tests/shader_layout.rs).
pub(super) const UNIFORMS: &[UniformLayout] = &[
    LossParams::uniform(kernel!("loss_forward", with "loss_params", "workgroup_sum")),
    LossParams::uniform(kernel!("loss_backward", with "loss_params")),
    SumParams::uniform(kernel!("sum_reduce", with "workgroup_sum")),
    SoftmaxCrossEntropyParams::uniform(kernel!("softmax_cross_entropy", entry = "forward")),
];
