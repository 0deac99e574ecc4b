//! Shared test harness: backends, random inputs, comparisons and finite differences.
#![allow(dead_code)]

use consistency::backend::cpu::{CpuBackend, CpuTensor};
use consistency::backend::gpu::{GpuBackend, GpuTensor};
use consistency::backend::Backend;
use consistency::tensor::Tensor;

/// The GPU backend on the default adapter (lavapipe on CI machines).
pub fn gpu() -> GpuBackend {
    GpuBackend::new_blocking().expect("a WebGPU-capable adapter (install mesa-vulkan-drivers for lavapipe)")
}

pub fn cpu() -> CpuBackend {
    CpuBackend::new()
}

/// Deterministic pseudo-random values in [-1, 1) (a small LCG: test inputs only).
pub fn random_vec(len: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

pub fn read<B: Backend>(be: &B, t: &Tensor<B::Storage>) -> Vec<f32> {
    pollster::block_on(be.read(t)).expect("readback")
}

pub fn read_gpu(be: &GpuBackend, t: &GpuTensor) -> Vec<f32> {
    read(be, t)
}

pub fn read_cpu(t: &CpuTensor) -> Vec<f32> {
    read(&CpuBackend, t)
}

/// Asserts `|a - b| <= atol + rtol * |b|` elementwise, naming the worst element on failure.
#[track_caller]
pub fn assert_close(what: &str, a: &[f32], b: &[f32], rtol: f32, atol: f32) {
    assert_eq!(a.len(), b.len(), "{what}: lengths differ");
    let mut worst = (0usize, 0.0f32);
    for i in 0..a.len() {
        assert!(a[i].is_finite(), "{what}: element {i} is {}", a[i]);
        let excess = (a[i] - b[i]).abs() - (atol + rtol * b[i].abs());
        if excess > worst.1 {
            worst = (i, excess);
        }
    }
    let i = worst.0;
    assert!(worst.1 <= 0.0, "{what}: element {i} is {} but expected {} (rtol {rtol}, atol {atol})", a[i], b[i]);
}

/// Checks an analytic gradient against central finite differences of
/// `L(x) = sum_j f(x)_j * r_j` (r a fixed random cotangent, so `grad` must be the backward of
/// `f` applied to `r`). `f` evaluates the forward pass (on any backend). Probes up to `probes`
/// coordinates spread over `x`; the difference quotient is summed in f64.
#[track_caller]
#[allow(clippy::too_many_arguments)]
pub fn check_gradient(
    what: &str,
    f: &mut dyn FnMut(&[f32]) -> Vec<f32>,
    x: &[f32],
    r: &[f32],
    grad: &[f32],
    h: f32,
    tol: f32,
    probes: usize,
) {
    assert_eq!(x.len(), grad.len(), "{what}: gradient length");
    let loss = |y: Vec<f32>| -> f64 {
        assert_eq!(y.len(), r.len(), "{what}: cotangent length");
        y.iter().zip(r).map(|(&a, &b)| a as f64 * b as f64).sum()
    };
    let stride = (x.len() / probes.max(1)).max(1);
    let mut x = x.to_vec();
    let mut checked = 0;
    for i in (stride / 2..x.len()).step_by(stride) {
        let saved = x[i];
        x[i] = saved + h;
        let plus = loss(f(&x));
        x[i] = saved - h;
        let minus = loss(f(&x));
        x[i] = saved;
        let numeric = ((plus - minus) / (2.0 * h as f64)) as f32;
        let analytic = grad[i];
        let scale = numeric.abs().max(analytic.abs()).max(1.0);
        assert!(
            (numeric - analytic).abs() <= tol * scale,
            "{what}: d/dx[{i}] analytic {analytic} vs finite difference {numeric} (tol {tol})"
        );
        checked += 1;
    }
    assert!(checked > 0, "{what}: no coordinate probed");
}

/// Checks the gradient `grads` of a scalar `loss` of the flat parameters `params` (laid out by
/// `layout`) by central differences of step `h` along whole-tensor directions. A whole-tensor
/// direction gives a signal far above the f32 rounding noise of a forward pass, which a single
/// coordinate would not. Two directions per tensor: the analytic gradient itself (a wrong
/// gradient g against the true t fails unless t.g = |g|^2) and a random one. The tolerance is
/// 2% of the larger derivative plus `atol`.
#[track_caller]
pub fn check_directional_gradients(
    layout: &consistency::nn::ParamLayout,
    params: &[f32],
    grads: &[f32],
    h: f64,
    atol: f64,
    loss: impl Fn(&[f32]) -> f64,
) {
    let norm = |v: &[f32]| v.iter().map(|&a| a as f64 * a as f64).sum::<f64>().sqrt();
    for (i, p) in layout.params.iter().enumerate() {
        let range = p.offset..p.offset + p.len();
        let g = &grads[range.clone()];
        for (which, dir) in [("gradient", g.to_vec()), ("random", random_vec(p.len(), 100 + i as u64))] {
            let len = norm(&dir);
            let v: Vec<f64> = dir.iter().map(|&a| a as f64 / len).collect();
            let analytic: f64 = g.iter().zip(&v).map(|(&a, &b)| a as f64 * b).sum();
            let shifted = |sign: f64| {
                let mut q = params.to_vec();
                for (j, vj) in range.clone().zip(&v) {
                    q[j] += (sign * h * vj) as f32;
                }
                loss(&q)
            };
            let numeric = (shifted(1.0) - shifted(-1.0)) / (2.0 * h);
            let tol = 2e-2 * analytic.abs().max(numeric.abs()) + atol;
            assert!(
                (numeric - analytic).abs() <= tol,
                "{} along the {which} direction: analytic {analytic:.6} vs finite difference {numeric:.6}",
                p.name
            );
        }
    }
}
