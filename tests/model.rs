//! The consistency parameterization around the network (`docs/paper.md`, section 2).

mod common;

use common::*;
use consistency::backend::{BTensor, Backend};
use consistency::model::Model;
use consistency::nn::Widths;
use consistency::schedule::{EPS, T};

const N: usize = 3;

fn setup(model: &Model) -> (Vec<f32>, Vec<f32>) {
    let mut params = model.net.layout.init(3);
    for (p, j) in params.iter_mut().zip(random_vec(model.net.layout.len, 4)) {
        *p += 0.05 * j;
    }
    (params, random_vec(N * 28 * 28, 5).iter().map(|v| 20.0 * v).collect())
}

fn forward<B: Backend>(be: &B, model: &Model, params: &[f32], x: &[f32], times: &[f64]) -> Vec<f32> {
    let p = be.upload(params, &[params.len()]);
    let xt: BTensor<B> = be.upload(x, &[N, 1, 28, 28]);
    read(be, &model.forward(be, &p, &xt, times, &[]).0)
}

#[test]
fn boundary_condition_holds_exactly() {
    let model = Model::new(Widths::TINY);
    let (params, x) = setup(&model);
    for (name, out) in [
        ("gpu", forward(&gpu(), &model, &params, &x, &[EPS; N])),
        ("cpu", forward(&cpu(), &model, &params, &x, &[EPS; N])),
    ] {
        assert_eq!(out, x, "{name}: f(x, eps) must be x exactly");
    }
}

/// Output and parameter gradients of `f` for output gradient `d_out`.
fn forward_backward<B: Backend>(
    be: &B,
    model: &Model,
    params: &[f32],
    x: &[f32],
    times: &[f64],
    d_out: &[f32],
) -> (Vec<f32>, Vec<f32>) {
    let p = be.upload(params, &[params.len()]);
    let g = be.zeros(&[params.len()]);
    let xt = be.upload(x, &[N, 1, 28, 28]);
    let (out, cache) = model.forward(be, &p, &xt, times, &[]);
    model.backward(be, &p, &g, &cache, &be.upload(d_out, &[N, 1, 28, 28]));
    (read(be, &out), read(be, &g))
}

#[test]
fn gpu_equals_cpu_forward_and_backward() {
    let model = Model::new(Widths::TINY);
    let (params, x) = setup(&model);
    let times = [EPS, 0.7, T];
    let d_out = random_vec(N * 28 * 28, 6);
    let (gpu_out, gpu_grads) = forward_backward(&gpu(), &model, &params, &x, &times, &d_out);
    let (cpu_out, cpu_grads) = forward_backward(&cpu(), &model, &params, &x, &times, &d_out);
    assert_close("f(x, t)", &gpu_out, &cpu_out, 1e-3, 1e-3);
    let scale = cpu_grads.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    assert_close("parameter gradients", &gpu_grads, &cpu_grads, 1e-3, 2e-3 * scale);
}

/// The backward through the parameterization (dF = c_out dy) against a central difference of
/// `sum(f * dy)` along the gradient itself, over all parameters at once.
#[test]
fn backward_matches_finite_difference() {
    let be = cpu();
    let model = Model::new(Widths::TINY);
    let (params, x) = setup(&model);
    let times = [0.01, 0.7, T];
    let d_out = random_vec(N * 28 * 28, 7);
    let (_, grads) = forward_backward(&be, &model, &params, &x, &times, &d_out);
    let norm = grads.iter().map(|&v| v as f64 * v as f64).sum::<f64>().sqrt();
    let loss = |sign: f64| -> f64 {
        let h = 1e-2 * sign / norm;
        let shifted: Vec<f32> = params.iter().zip(&grads).map(|(&p, &g)| p + (h * g as f64) as f32).collect();
        forward(&be, &model, &shifted, &x, &times).iter().zip(&d_out).map(|(&a, &b)| a as f64 * b as f64).sum()
    };
    let numeric = (loss(1.0) - loss(-1.0)) / 2e-2;
    assert!((numeric - norm).abs() <= 2e-2 * norm, "directional derivative {numeric} vs |grad| {norm}");
}
