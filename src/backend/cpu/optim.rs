//! CPU twins of `../gpu/optim.rs`.

use rayon::prelude::*;

use super::{data, data_mut, CpuBackend, CpuTensor};
use crate::backend::{AdamStep, OptimOps};

/// Elements per rayon task: big enough that scheduling costs nothing next to the arithmetic.
const CHUNK: usize = 1 << 14;

impl OptimOps for CpuBackend {
    fn adam(
        &self,
        step: &AdamStep,
        params: &CpuTensor,
        grad: &CpuTensor,
        m: &CpuTensor,
        v: &CpuTensor,
        grad_sumsq: &CpuTensor,
    ) {
        let grad_sumsq = data(grad_sumsq)[0];
        let (mut params, grad, mut m, mut v) = (data_mut(params), data(grad), data_mut(m), data_mut(v));
        let (params, grad, m, v) = (&mut *params, &*grad, &mut *m, &mut *v);
        assert!(step.t >= 1, "adam: the step count t is 1-based");
        // A non-finite norm means a NaN or Inf somewhere in the gradient: skip the step.
        if !grad_sumsq.is_finite() {
            return;
        }
        let clip =
            if step.max_grad_norm > 0.0 { (step.max_grad_norm / (grad_sumsq.sqrt() + 1e-6)).min(1.0) } else { 1.0 };
        // Bias corrections in f64, rounded once to f32, exactly as `gpu/optim.rs` passes them.
        let t = step.t as i32;
        let bias1 = (1.0 - (step.beta1 as f64).powi(t)) as f32;
        let bias2 = (1.0 - (step.beta2 as f64).powi(t)) as f32;
        let (b1, b2, lr, eps) = (step.beta1, step.beta2, step.lr, step.eps);
        params
            .par_chunks_mut(CHUNK)
            .zip(grad.par_chunks(CHUNK))
            .zip(m.par_chunks_mut(CHUNK))
            .zip(v.par_chunks_mut(CHUNK))
            .for_each(|(((p, g), m), v)| {
                for i in 0..p.len() {
                    let g = clip * g[i];
                    m[i] = b1 * m[i] + (1.0 - b1) * g;
                    v[i] = b2 * v[i] + (1.0 - b2) * g * g;
                    p[i] -= lr * (m[i] / bias1) / ((v[i] / bias2).sqrt() + eps);
                }
            });
    }

    fn ema(&self, mu: f32, avg: &CpuTensor, x: &CpuTensor) {
        let (mut avg, x) = (data_mut(avg), data(x));
        let (avg, x) = (&mut *avg, &*x);
        avg.par_chunks_mut(CHUNK).zip(x.par_chunks(CHUNK)).for_each(|(a, x)| {
            for i in 0..a.len() {
                a[i] = mu * a[i] + (1.0 - mu) * x[i];
            }
        });
    }
}
