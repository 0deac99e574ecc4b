//! The probability-flow ODE's solvers (section 1) on a denoiser whose ODE is known in closed
//! form: data `x_0 ~ N(mu, s^2 I)`, whose ideal denoiser is `D(x, t) = (s^2 x + t^2 mu) / (s^2 +
//! t^2)`, so a trajectory is `x(t) = mu + (x_T - mu) sqrt(s^2 + t^2) / sqrt(s^2 + T^2)`.

mod common;

use common::*;
use consistency::backend::prelude::*;
use consistency::backend::{BTensor, RandomKey};
use consistency::model::Model;
use consistency::nn::Widths;
use consistency::ode::{self, Denoise, Solver, Teacher};
use consistency::random;
use consistency::schedule::{EPS, T};

const MU: f64 = 0.3;
const S: f64 = 0.5;

/// The ideal denoiser of Gaussian data, on the backend's ops.
struct Gaussian;

impl<B: Backend> Denoise<B> for Gaussian {
    fn denoise(&self, be: &B, x: &BTensor<B>, times: &[f64]) -> BTensor<B> {
        let per_sample =
            |f: &dyn Fn(f64) -> f64| be.upload(&times.iter().map(|&t| f(t) as f32).collect::<Vec<_>>(), &[times.len()]);
        let ones = be.upload(&vec![1.0; x.len()], &x.shape);
        let out = be.empty(&x.shape);
        let (a, b) = (per_sample(&|t| S * S / (S * S + t * t)), per_sample(&|t| t * t * MU / (S * S + t * t)));
        be.scale_add(&a, x, &b, &ones, &out);
        out
    }
}

fn exact(x_from: f64, t_from: f64, t_to: f64) -> f64 {
    MU + (x_from - MU) * (S * S + t_to * t_to).sqrt() / (S * S + t_from * t_from).sqrt()
}

#[test]
fn one_euler_and_one_heun_step_equal_the_hand_computed_values() {
    let be = cpu();
    let x0 = [1.7f32, -0.4];
    let x = be.upload(&x0, &[2, 1, 1, 1]);
    let (t1, t0) = ([2.0, 2.0], [1.0, 1.0]);
    // d(x, t) = (x - D) / t = t (x - mu) / (s^2 + t^2) for this denoiser.
    let slope = |x: f64, t: f64| t * (x - MU) / (S * S + t * t);
    let h = -1.0;
    let euler: Vec<f32> = x0.iter().map(|&x| (x as f64 + h * slope(x as f64, 2.0)) as f32).collect();
    let heun: Vec<f32> = x0
        .iter()
        .map(|&x| {
            let x = x as f64;
            let e = x + h * slope(x, 2.0);
            (x + h * (slope(x, 2.0) + slope(e, 1.0)) / 2.0) as f32
        })
        .collect();
    assert_close("euler", &read(&be, &ode::step(&be, &Gaussian, Solver::Euler, &x, &t1, &t0)), &euler, 1e-6, 1e-7);
    assert_close("heun", &read(&be, &ode::step(&be, &Gaussian, Solver::Heun, &x, &t1, &t0)), &heun, 1e-6, 1e-7);
}

/// Integrating from T to eps on the Karras grid lands near the exact trajectory's end; Heun's
/// error is far below Euler's and shrinks like a second-order method's when the steps double
/// (measured: Heun 10/20/40 steps 0.29 / 0.066 / 0.016, Euler 20/40 0.22 / 0.12).
#[test]
fn the_sampler_follows_the_exact_trajectory_heun_to_second_order() {
    let be = cpu();
    let count = 3;
    // The start x_T = T z, z drawn as the sampler draws it (stream 0 of the seed).
    let key = RandomKey { seed: 4, step: 0, stream: 0 };
    let start: Vec<f64> = (0..count as u32 * 784).map(|i| T * random::normal(key, i) as f64).collect();
    let error = |solver, steps| {
        let out = read(&be, &ode::sample(&be, &Gaussian, solver, steps, 0..count, 4).unwrap());
        out.iter().zip(&start).map(|(&y, &x_t)| (y as f64 - exact(x_t, T, EPS)).abs()).fold(0.0, f64::max)
    };
    let (heun_10, heun_20, heun_40) = (error(Solver::Heun, 10), error(Solver::Heun, 20), error(Solver::Heun, 40));
    let (euler_20, euler_40) = (error(Solver::Euler, 20), error(Solver::Euler, 40));
    println!("max error: heun 10/20/40 steps {heun_10:.2e} {heun_20:.2e} {heun_40:.2e}; euler 20/40 {euler_20:.2e} {euler_40:.2e}");
    // The worst of 2,352 trajectories, whose ends scale with |z| (up to ~4 here).
    assert!(heun_40 < 0.03, "heun, 40 steps: {heun_40}");
    assert!(heun_40 < euler_40 / 4.0, "heun {heun_40} against euler {euler_40}");
    assert!(heun_10 / heun_20 > 2.5 && heun_20 / heun_40 > 2.5, "second order: {heun_10} {heun_20} {heun_40}");
    assert!(euler_20 / euler_40 > 1.5 && euler_20 / euler_40 < 2.6, "first order: {euler_20} {euler_40}");
    assert_eq!(ode::evaluations(Solver::Heun, 18), 35);
    assert_eq!(ode::evaluations(Solver::Euler, 18), 18);
}

/// A Heun step of the teacher network `[2, 1, 28, 28]` from times (3, 0.5) to (1.5, 0.2).
fn teacher_step<B: Backend>(be: &B, model: &Model, init: &[f32], x0: &[f32]) -> Vec<f32> {
    let params = be.upload(init, &[init.len()]);
    let x = be.upload(x0, &[2, 1, 28, 28]);
    let teacher = Teacher { model, params: &params, labels: &[], guidance: 1.0 };
    read(be, &ode::step(be, &teacher, Solver::Heun, &x, &[3.0, 0.5], &[1.5, 0.2]))
}

#[test]
fn a_heun_step_of_the_teacher_network_on_the_gpu_equals_the_cpu() {
    let model = Model::denoiser(Widths::TINY);
    let init = model.net.layout.init(3);
    let x0 = random_vec(2 * 784, 9);
    let on_cpu = teacher_step(&cpu(), &model, &init, &x0);
    let on_gpu = teacher_step(&gpu(), &model, &init, &x0);
    assert_close("heun step", &on_gpu, &on_cpu, 1e-3, 1e-4);
}

/// Classifier-free guidance of a class-conditional teacher: `D_w = D + w (D(y) - D)`, from two
/// evaluations of the one network (with and without the label), the same on both backends; a
/// sample without a label is the unconditional denoiser whatever w.
#[test]
fn a_guided_teacher_extrapolates_from_unconditional_to_conditional() {
    let model = Model::denoiser(Widths::TINY).with_classes(10);
    let mut init = model.net.layout.init(4);
    // The label embedding starts at zero; give it values so the label changes the output.
    let label = model.net.layout.params.iter().find(|p| p.name == "label.weight").unwrap();
    let jitter = random_vec(label.len(), 5);
    init[label.offset..label.offset + label.len()].copy_from_slice(&jitter);
    let x0 = random_vec(2 * 784, 6);
    let times = [2.0, 0.7];
    let labels = [Some(4), None];
    for on_gpu in [false, true] {
        let run = |labels: &[Option<u8>], w: f64| -> Vec<f32> {
            if on_gpu {
                let be = gpu();
                let p = be.upload(&init, &[init.len()]);
                let x = be.upload(&x0, &[2, 1, 28, 28]);
                read(&be, &Teacher { model: &model, params: &p, labels, guidance: w }.denoise(&be, &x, &times))
            } else {
                let be = cpu();
                let p = be.upload(&init, &[init.len()]);
                let x = be.upload(&x0, &[2, 1, 28, 28]);
                read(&be, &Teacher { model: &model, params: &p, labels, guidance: w }.denoise(&be, &x, &times))
            }
        };
        let (conditional, unconditional, guided) = (run(&labels, 1.0), run(&[], 1.0), run(&labels, 2.5));
        let expected: Vec<f32> = conditional.iter().zip(&unconditional).map(|(c, u)| u + 2.5 * (c - u)).collect();
        assert_close(&format!("guided (gpu: {on_gpu})"), &guided, &expected, 1e-4, 1e-5);
        let differs = conditional[..784].iter().zip(&unconditional[..784]).any(|(c, u)| (c - u).abs() > 1e-3);
        assert!(differs, "the label changes nothing: the test would pass for any guidance");
        assert_close("a dropped label is unconditional", &guided[784..], &unconditional[784..], 1e-5, 1e-6);
    }
    let plain = Model::denoiser(Widths::TINY);
    let error = ode::check_guidance(&plain, 2.0).unwrap_err().to_string();
    assert!(error.contains("class-conditional"), "{error}");
    assert!(ode::check_guidance(&model, 0.5).is_err());
}
