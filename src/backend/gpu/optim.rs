//! Optimizer kernels over the flat parameter buffer: Adam (with clipping by global norm) and EMA.

use super::{grid, kernel, params, GpuBackend, GpuTensor, UniformLayout, WORKGROUP};
use crate::backend::{AdamStep, OptimOps};

params! {
    /// Mirrors `Params` of `adam.wgsl`.
    struct AdamParams {
        len: u32,
        lr: f32,
        beta1: f32,
        beta2: f32,
        eps: f32,
        bias1: f32,
        bias2: f32,
        max_grad_norm: f32,
    }
}

impl AdamParams {
    /// The bias corrections `1 - beta^t` are computed here in f64, once per step, rather than per
    /// element in the shader: WGSL's `pow` has implementation-defined precision (it is exp2 of
    /// t * log2(beta), whose error grows with t, and t reaches 10^5 and more), and `1 - beta^t` in
    /// f32 loses digits to cancellation for small t (beta2 = 0.999). Rounded once to f32, the
    /// same values drive both backends (`cpu/optim.rs` computes them the same way).
    fn new(step: &AdamStep, len: usize) -> Self {
        assert!(step.t >= 1, "adam: the step count t is 1-based");
        let t = step.t as i32;
        AdamParams {
            len: len as u32,
            lr: step.lr,
            beta1: step.beta1,
            beta2: step.beta2,
            eps: step.eps,
            bias1: (1.0 - (step.beta1 as f64).powi(t)) as f32,
            bias2: (1.0 - (step.beta2 as f64).powi(t)) as f32,
            max_grad_norm: step.max_grad_norm,
        }
    }
}

params! {
    /// Mirrors `Params` of `ema.wgsl`.
    struct EmaParams {
        len: u32,
        mu: f32,
    }
}

impl OptimOps for GpuBackend {
    fn adam(
        &self,
        step: &AdamStep,
        params: &GpuTensor,
        grad: &GpuTensor,
        m: &GpuTensor,
        v: &GpuTensor,
        grad_sumsq: &GpuTensor,
    ) {
        let len = params.len();
        assert!(grad.len() == len && m.len() == len && v.len() == len, "adam: params, grad, m, v lengths");
        let sumsq = grad_sumsq.view(0, &[1]);
        let p = AdamParams::new(step, len);
        self.dispatch(&kernel!("adam"), &p, &[params, grad, m, v, &sumsq], grid(len, WORKGROUP));
    }

    fn ema(&self, mu: f32, avg: &GpuTensor, x: &GpuTensor) {
        assert_eq!(avg.len(), x.len(), "ema: avg and x lengths");
        self.dispatch(&kernel!("ema"), &EmaParams { len: avg.len() as u32, mu }, &[avg, x], grid(avg.len(), WORKGROUP));
    }
}

/// The parameters of each kernel here (tests/shader_layout.rs).
pub(super) const UNIFORMS: &[UniformLayout] =
    &[AdamParams::uniform(kernel!("adam")), EmaParams::uniform(kernel!("ema"))];
