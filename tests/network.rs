//! The whole reference U-Net at small widths, class-conditional (so the label embedding is
//! checked with everything else): forward and backward on the GPU equal the CPU backend, and
//! the backward agrees with finite differences of the whole network.

mod common;

use common::*;
use consistency::backend::prelude::*;
use consistency::backend::BTensor;
use consistency::nn::{UNet, Widths};

const N: usize = 3;
const SIDE: usize = 28;
/// Not the `tiny` config (8, 16, 16): its 8 channels at 28x28 make GroupNorm(8) groups of one
/// channel, which cancel any per-channel bias before them, so several gradients there are
/// exactly zero and would test nothing. These widths give 2 to 7 channels per group.
const WIDTHS: Widths = Widths([16, 24, 32]);
const CLASSES: usize = 10;

/// One-hot labels of the three samples: digits 3 and 7, and a zero row (no label, as label
/// dropout gives).
fn labels() -> Vec<f32> {
    let mut y = vec![0.0; N * CLASSES];
    y[3] = 1.0;
    y[2 * CLASSES + 7] = 1.0;
    y
}

/// Random but well-conditioned inputs: initial weights with perturbed norms and biases (the
/// initial zero biases and unit gains would leave those gradients untested), images in [-1, 1],
/// c_noise spread over its range [-1.6, 1.1].
fn inputs(net: &UNet) -> (Vec<f32>, Vec<f32>, Vec<f32>, Vec<f32>) {
    let mut params = net.layout.init(7);
    let jitter = random_vec(params.len(), 8);
    for p in &net.layout.params {
        // The label embedding starts at zero; perturbed, the output depends on the labels.
        if !p.name.ends_with(".weight") || p.name == "label.weight" {
            for i in p.offset..p.offset + p.len() {
                params[i] += 0.2 * jitter[i];
            }
        }
    }
    let x = random_vec(N * SIDE * SIDE, 9);
    let c_noise = vec![-1.5, 0.1, 1.05];
    let dy = random_vec(N * SIDE * SIDE, 10);
    (params, x, c_noise, dy)
}

struct Run {
    y: Vec<f32>,
    grads: Vec<f32>,
}

fn run<B: Backend>(be: &B, net: &UNet, params: &[f32], x: &[f32], c_noise: &[f32], dy: &[f32]) -> Run {
    let p = be.upload(params, &[params.len()]);
    let g = be.zeros(&[params.len()]);
    let xt = be.upload(x, &[N, 1, SIDE, SIDE]);
    let ct = be.upload(c_noise, &[N]);
    let yt = be.upload(&labels(), &[N, CLASSES]);
    let (y, cache) = net.forward(be, &p, &xt, &ct, Some(&yt));
    let dyt: BTensor<B> = be.upload(dy, &[N, 1, SIDE, SIDE]);
    net.backward(be, &p, &g, &cache, &dyt);
    Run { y: read(be, &y), grads: read(be, &g) }
}

#[test]
fn unet_forward_and_backward_on_gpu_equal_cpu() {
    let net = UNet::with_classes(WIDTHS, CLASSES);
    let (params, x, c_noise, dy) = inputs(&net);
    let on_gpu = run(&gpu(), &net, &params, &x, &c_noise, &dy);
    let on_cpu = run(&cpu(), &net, &params, &x, &c_noise, &dy);
    assert_close("output", &on_gpu.y, &on_cpu.y, 1e-3, 1e-4);
    // Compare each parameter's gradient relative to its own scale: summation order differs
    // between the tiled GPU kernels and the CPU's sgemm.
    for p in &net.layout.params {
        let range = p.offset..p.offset + p.len();
        let scale = on_cpu.grads[range.clone()].iter().fold(0.0f32, |m, v| m.max(v.abs()));
        assert!(scale > 0.0, "{}: gradient is all zero", p.name);
        assert_close(&p.name, &on_gpu.grads[range.clone()], &on_cpu.grads[range], 1e-3, 2e-3 * scale);
    }
}

/// Along a direction v in one parameter tensor, the central difference of
/// `L(p) = sum(F(p) * dy)` must equal `grad . v`. A whole-tensor direction gives a signal far
/// above the f32 rounding noise of the forward pass, which a single coordinate would not. Two
/// directions per tensor: along the analytic gradient itself (a wrong gradient g against the
/// true t fails unless t.g = |g|^2) and a random one.
#[test]
fn unet_backward_matches_finite_differences() {
    let be = cpu();
    let net = UNet::with_classes(WIDTHS, CLASSES);
    let (params, x, c_noise, dy) = inputs(&net);
    let grads = run(&be, &net, &params, &x, &c_noise, &dy).grads;
    let xt = be.upload(&x, &[N, 1, SIDE, SIDE]);
    let ct = be.upload(&c_noise, &[N]);
    let yt = be.upload(&labels(), &[N, CLASSES]);
    let loss = |p: &[f32]| -> f64 {
        let pt = be.upload(p, &[p.len()]);
        let y = read(&be, &net.forward(&be, &pt, &xt, &ct, Some(&yt)).0);
        y.iter().zip(&dy).map(|(&a, &b)| a as f64 * b as f64).sum()
    };
    check_directional_gradients(&net.layout, &params, &grads, 1e-2, 2e-3, loss);
}

/// The in-page self-check (`consistency::selftest`) passes natively, so a failure in the browser
/// points at the browser's WebGPU, not at the check.
#[test]
fn selftest_passes_on_lavapipe() {
    for check in pollster::block_on(consistency::selftest::run(&gpu(), &cpu())).unwrap() {
        assert!(check.passed(), "{}: error {} above {}", check.name, check.error, check.tolerance);
    }
}
