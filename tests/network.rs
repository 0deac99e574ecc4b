//! The whole reference U-Net (tiny widths): forward and backward on the GPU equal the CPU
//! backend, and the CPU backward agrees with finite differences of the whole network.

mod common;

use common::*;
use consistency::backend::{BTensor, Backend};
use consistency::nn::{UNet, Widths};

const N: usize = 3;
const SIDE: usize = 28;

/// Random but well-conditioned inputs: initial weights with perturbed norms and biases (the
/// initial zero biases and unit gains would leave those gradients untested), images in [-1, 1],
/// c_noise spread over its range [-1.6, 1.1].
fn inputs(net: &UNet) -> (Vec<f32>, Vec<f32>, Vec<f32>, Vec<f32>) {
    let mut params = net.layout.init(7);
    let jitter = random_vec(params.len(), 8);
    for p in &net.layout.params {
        if !p.name.ends_with(".weight") {
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
    let (y, cache) = net.forward(be, &p, &xt, &ct);
    let dyt: BTensor<B> = be.upload(dy, &[N, 1, SIDE, SIDE]);
    net.backward(be, &p, &g, &cache, &dyt);
    Run { y: read(be, &y), grads: read(be, &g) }
}

#[test]
fn unet_forward_and_backward_on_gpu_equal_cpu() {
    let net = UNet::new(Widths::TINY);
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

#[test]
fn unet_backward_matches_finite_differences() {
    let be = cpu();
    let net = UNet::new(Widths::TINY);
    let (params, x, c_noise, dy) = inputs(&net);
    // A large cotangent makes gradients large next to check_gradient's absolute floor of 1, so
    // the relative tolerance is what binds.
    let dy: Vec<f32> = dy.iter().map(|v| 100.0 * v).collect();
    let analytic = run(&be, &net, &params, &x, &c_noise, &dy).grads;
    let xt = be.upload(&x, &[N, 1, SIDE, SIDE]);
    let ct = be.upload(&c_noise, &[N]);
    let forward = |p: &[f32]| {
        let pt = be.upload(p, &[p.len()]);
        read(&be, &net.forward(&be, &pt, &xt, &ct).0)
    };
    // Probe a few coordinates of every parameter tensor, so each layer's backward is covered.
    for p in &net.layout.params {
        let slice = p.offset..p.offset + p.len();
        let mut f = |sub: &[f32]| {
            let mut full = params.clone();
            full[slice.clone()].copy_from_slice(sub);
            forward(&full)
        };
        check_gradient(&p.name, &mut f, &params[slice.clone()], &dy, &analytic[slice.clone()], 1e-2, 3e-2, 2);
    }
}
