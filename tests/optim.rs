//! Adam (with clipping by global norm and the NaN guard) and EMA against their CPU twins and
//! closed forms.

mod common;

use common::*;
use consistency::backend::prelude::*;
use consistency::backend::{AdamStep, BTensor};

const STEP: AdamStep = AdamStep { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, t: 1, max_grad_norm: 0.0 };

/// Flat parameter state on one backend.
struct State<B: Backend> {
    params: BTensor<B>,
    grad: BTensor<B>,
    m: BTensor<B>,
    v: BTensor<B>,
    sumsq: BTensor<B>,
}

impl<B: Backend> State<B> {
    fn new(be: &B, params: &[f32]) -> Self {
        let n = params.len();
        State {
            params: be.upload(params, &[n]),
            grad: be.zeros(&[n]),
            m: be.zeros(&[n]),
            v: be.zeros(&[n]),
            sumsq: be.zeros(&[1]),
        }
    }

    /// One training step's optimizer work: ||grad||^2 on the backend, then Adam.
    fn step(&self, be: &B, step: &AdamStep, grad: &[f32]) {
        be.write(&self.grad, grad);
        be.sum(&self.grad, &self.sumsq, true, 1.0);
        be.adam(step, &self.params, &self.grad, &self.m, &self.v, &self.sumsq);
    }

    fn read(&self, be: &B) -> [Vec<f32>; 3] {
        [read(be, &self.params), read(be, &self.m), read(be, &self.v)]
    }
}

#[test]
fn adam_matches_cpu_over_several_steps() {
    let (g, c) = (gpu(), cpu());
    let n = 10_007;
    let init = random_vec(n, 1);
    // max_grad_norm: off, inactive (above every gradient norm here, 58 to 290), active (below).
    for max_grad_norm in [0.0, 1e3, 0.5] {
        let (gs, cs) = (State::new(&g, &init), State::new(&c, &init));
        for t in 1..=5 {
            let grad: Vec<f32> = random_vec(n, 100 + t as u64).iter().map(|v| v * t as f32).collect();
            let step = AdamStep { t, max_grad_norm, ..STEP };
            gs.step(&g, &step, &grad);
            cs.step(&c, &step, &grad);
        }
        let ([gp, gm, gv], [cp, cm, cv]) = (gs.read(&g), cs.read(&c));
        let what = format!("max_grad_norm {max_grad_norm}");
        assert_close(&format!("params, {what}"), &gp, &cp, 1e-5, 1e-7);
        assert_close(&format!("m, {what}"), &gm, &cm, 1e-5, 1e-9);
        assert_close(&format!("v, {what}"), &gv, &cv, 1e-5, 1e-12);
        assert!(gp.iter().zip(&init).any(|(a, b)| a != b), "adam did not move the params");
    }
}

fn first_step_closed_form<B: Backend>(be: &B) {
    let n = 1000;
    let init = random_vec(n, 2);
    // |g| in [0.01, 1): far above eps, so the first step is lr * g / |g| = lr * sign(g).
    let grad: Vec<f32> = random_vec(n, 3).iter().map(|v| v.signum() * (0.01 + 0.99 * v.abs())).collect();
    let s = State::new(be, &init);
    s.step(be, &STEP, &grad);
    let [p, m, v] = s.read(be);
    let moved: Vec<f32> = init.iter().zip(&p).map(|(a, b)| a - b).collect();
    let sign: Vec<f32> = grad.iter().map(|g| STEP.lr * g.signum()).collect();
    assert_close(&format!("{}: first step", be.name()), &moved, &sign, 1e-4, 1e-9);
    let m_expected: Vec<f32> = grad.iter().map(|g| 0.1 * g).collect();
    let v_expected: Vec<f32> = grad.iter().map(|g| 0.001 * g * g).collect();
    assert_close(&format!("{}: m after one step", be.name()), &m, &m_expected, 1e-5, 0.0);
    assert_close(&format!("{}: v after one step", be.name()), &v, &v_expected, 1e-4, 0.0);
}

#[test]
fn adam_first_step_is_lr_times_sign() {
    first_step_closed_form(&gpu());
    first_step_closed_form(&cpu());
}

fn clipping<B: Backend>(be: &B) {
    let n = 4096;
    let grad = random_vec(n, 4);
    let norm = grad.iter().map(|&g| g as f64 * g as f64).sum::<f64>().sqrt();
    for (max_grad_norm, clip) in [(0.0, 1.0), (2.0 * norm as f32, 1.0), (0.25, 0.25 / (norm + 1e-6))] {
        let s = State::new(be, &vec![0.0; n]);
        s.step(be, &AdamStep { max_grad_norm, ..STEP }, &grad);
        let [_, m, _] = s.read(be);
        // m after one step is (1 - beta1) times the clipped gradient.
        let expected: Vec<f32> = grad.iter().map(|&g| (0.1 * clip * g as f64) as f32).collect();
        assert_close(&format!("{}: m with max_grad_norm {max_grad_norm}", be.name()), &m, &expected, 2e-6, 0.0);
    }
}

#[test]
fn adam_clips_to_the_global_norm() {
    clipping(&gpu());
    clipping(&cpu());
}

fn nan_skips_the_step<B: Backend>(be: &B) {
    let n = 777;
    let init = random_vec(n, 5);
    let s = State::new(be, &init);
    s.step(be, &STEP, &random_vec(n, 6));
    let before = s.read(be);
    let t2 = AdamStep { t: 2, max_grad_norm: 1.0, ..STEP };
    // A NaN or an infinity anywhere in the gradient makes ||grad||^2 non-finite.
    for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
        let mut grad = random_vec(n, 7);
        grad[n / 2] = bad;
        s.step(be, &t2, &grad);
        let after = s.read(be);
        for (name, (a, b)) in ["params", "m", "v"].iter().zip(after.iter().zip(&before)) {
            assert!(
                a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits()),
                "{}: {name} changed by a step with a {bad} gradient",
                be.name()
            );
        }
    }
    // Overflowing squares (finite gradient, infinite norm) also skip the step.
    s.step(be, &t2, &vec![1e30; n]);
    assert_eq!(s.read(be)[0], before[0], "{}: params changed by an overflowing gradient norm", be.name());
    // And the state still trains afterwards.
    s.step(be, &t2, &random_vec(n, 8));
    assert_ne!(s.read(be)[0], before[0], "{}: a finite step after the skipped ones did nothing", be.name());
}

#[test]
fn adam_skips_a_step_with_a_non_finite_gradient_norm() {
    nan_skips_the_step(&gpu());
    nan_skips_the_step(&cpu());
}

#[test]
fn adam_bias_correction_late_in_training() {
    // At t = 10^6 the corrections are 1 to f32 precision; GPU and CPU must still agree.
    let (g, c) = (gpu(), cpu());
    let n = 3000;
    let init = random_vec(n, 9);
    let (gs, cs) = (State::new(&g, &init), State::new(&c, &init));
    for t in [999_999, 1_000_000] {
        let grad = random_vec(n, t as u64);
        let step = AdamStep { t, ..STEP };
        gs.step(&g, &step, &grad);
        cs.step(&c, &step, &grad);
    }
    let ([gp, gm, gv], [cp, cm, cv]) = (gs.read(&g), cs.read(&c));
    assert_close("params", &gp, &cp, 1e-5, 1e-7);
    assert_close("m", &gm, &cm, 1e-5, 1e-9);
    assert_close("v", &gv, &cv, 1e-5, 1e-12);
}

#[test]
fn ema_matches_cpu_and_closed_form() {
    let (g, c) = (gpu(), cpu());
    let n = 100_003;
    let avg0 = random_vec(n, 10);
    let x = random_vec(n, 11);
    let mu = 0.95f32;
    let (ga, gx) = (g.upload(&avg0, &[n]), g.upload(&x, &[n]));
    let (ca, cx) = (c.upload(&avg0, &[n]), c.upload(&x, &[n]));
    let steps = 20;
    for _ in 0..steps {
        g.ema(mu, &ga, &gx);
        c.ema(mu, &ca, &cx);
    }
    let (gv, cv) = (read(&g, &ga), read(&c, &ca));
    assert_close("ema vs cpu", &gv, &cv, 1e-6, 1e-7);
    // With x fixed, avg_k = x + mu^k (avg_0 - x).
    let decay = (mu as f64).powi(steps);
    let closed: Vec<f32> =
        avg0.iter().zip(&x).map(|(&a, &x)| (x as f64 + decay * (a as f64 - x as f64)) as f32).collect();
    assert_close("ema closed form", &gv, &closed, 1e-5, 1e-6);
    // mu = 0 copies x (the iCT teacher without EMA); mu = 1 keeps avg.
    g.ema(1.0, &ga, &gx);
    assert_eq!(read(&g, &ga), gv, "ema with mu = 1 changed avg");
    g.ema(0.0, &ga, &gx);
    assert_eq!(read(&g, &ga), x, "ema with mu = 0 is not a copy");
}

#[test]
fn ema_on_a_view_and_a_two_dimensional_grid() {
    // More than 65535 workgroups of 256 values spill into the grid's y dimension; the update must
    // still touch every element once, and only the view.
    let g = gpu();
    let n = 65_535 * 256 + 300;
    let avg = g.upload(&vec![1.0; n + 128], &[n + 128]);
    let x = g.upload(&vec![3.0; n], &[n]);
    g.ema(0.5, &avg.view(64, &[n]), &x);
    let v = read(&g, &avg);
    assert!(v[..64].iter().chain(&v[64 + n..]).all(|&a| a == 1.0), "ema wrote outside its view");
    assert!(v[64..64 + n].iter().all(|&a| a == 2.0), "ema missed or repeated elements");
}
