//! Views of the consistency property for the page (and the tests): what a person should *see*
//! to understand consistency models.
//!
//! - [`trajectory`]: one digit noised to a strip of times from eps to T (one noise draw z for
//!   the whole strip: `x_t = x + t z`, the points consistency training pairs up), and under each
//!   the model's `f(x_t, t)`. A trained consistency model maps the whole strip back to the same
//!   digit (section 2's self-consistency); an untrained one does not.
//! - [`multistep_trace`]: Algorithm 1 drawn step by step: noise in, denoise, re-noise to the
//!   next time point, denoise again.
//! - [`schedule`]: the Karras grid, N(k) and mu(k) of a run's recipe.
//!
//! Noised images have values far outside [-1, 1]; for display each is scaled by
//! `1 / sqrt(1 + t^2)` (unit variance at every t, like the network's own input scaling).

use crate::backend::{BTensor, Backend, RandomKey};
use crate::image::{digit_shape, PIXELS};
use crate::model::Model;
use crate::noise::{noised, renoise};
use crate::random;
use crate::recipe::TrainConfig;
use crate::sample::labels_for;
use crate::schedule::{karras_grid, EPS, T};

/// `count` times from eps to T, evenly spaced in log t.
pub fn strip_times(count: usize) -> Vec<f64> {
    assert!(count >= 2, "a strip needs at least 2 times");
    (0..count).map(|i| (EPS.ln() + i as f64 / (count - 1) as f64 * (T.ln() - EPS.ln())).exp()).collect()
}

/// The digit `x0` (784 values in [-1, 1]) noised to each of `times` with one noise draw z of
/// `seed` (scaled for display), and the model's output at each: two `[times.len(), 1, 28, 28]`
/// batches, ready for [`crate::image::to_gray`] after a read-back.
pub fn trajectory<B: Backend>(
    be: &B,
    model: &Model,
    params: &BTensor<B>,
    x0: &[f32],
    times: &[f64],
    seed: u64,
) -> (BTensor<B>, BTensor<B>) {
    assert_eq!(x0.len(), PIXELS, "one 28x28 digit");
    let key = RandomKey { seed, step: 0, stream: 0 };
    let z: Vec<f32> = (0..PIXELS as u32).map(|i| random::normal(key, i)).collect();
    let (mut input, mut shown) = (Vec::with_capacity(times.len() * PIXELS), Vec::with_capacity(times.len() * PIXELS));
    for &t in times {
        let scale = 1.0 / (1.0 + t * t).sqrt();
        for (&x, &z) in x0.iter().zip(&z) {
            let v = x as f64 + t * z as f64;
            input.push(v as f32);
            shown.push((v * scale) as f32);
        }
    }
    let shape = digit_shape(times.len());
    let mapped = model.forward(be, params, &be.upload(&input, &shape), times, &[]).0;
    (be.upload(&shown, &shape), mapped)
}

/// Algorithm 1 step by step for `count` samples of `seed` (of `digit` for a class-conditional
/// model): the noise at T, f of it, then for each time point the re-noised sample and f of
/// it. Each frame is a caption and a `[count, 1, 28, 28]` batch (noise scaled for display);
/// the last frame is exactly [`crate::sample::sample_rows`]'s result.
pub fn multistep_trace<B: Backend>(
    be: &B,
    model: &Model,
    params: &BTensor<B>,
    count: usize,
    time_points: &[f64],
    seed: u64,
    digit: Option<u8>,
) -> crate::Result<Vec<(String, BTensor<B>)>> {
    crate::sample::check_time_points(time_points, false)?;
    let labels = labels_for(model, digit, count)?;
    let display = |x: &BTensor<B>, t: f64| {
        let out = be.empty(&x.shape);
        let scale = be.upload(&vec![(1.0 / (1.0 + t * t).sqrt()) as f32; count], &[count]);
        be.scale_add(&scale, x, &be.zeros(&[count]), x, &out);
        out
    };
    let shape = digit_shape(count);
    let start = noised(be, None, &shape, T, seed, 0);
    let mut x = model.forward(be, params, &start, &vec![T; count], &labels).0;
    let mut frames = vec![(format!("noise, t = {T}"), display(&start, T)), (format!("f(x, {T})"), x.clone())];
    for (s, &tau) in time_points.iter().enumerate() {
        let noisy = renoise(be, &x, tau, seed, s as u32 + 1, 0);
        x = model.forward(be, params, &noisy, &vec![tau; count], &labels).0;
        frames.push((format!("re-noised to t = {tau}"), display(&noisy, tau)));
        frames.push((format!("f(x, {tau})"), x.clone()));
    }
    Ok(frames)
}

/// A run's schedule for the page's chart: the Karras grid at the current step, and N(k) and
/// mu(k) at `points` steps spread over the planned K.
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(target_arch = "wasm32", derive(serde::Serialize), serde(rename_all = "camelCase"))]
pub struct ScheduleView {
    pub step: u32,
    pub total_steps: u32,
    /// The time grid t_1 = eps < ... < t_N(k) = T at the current step (empty for a recipe
    /// without one: the teacher, consistency tuning).
    pub grid: Vec<f64>,
    pub steps: Vec<u32>,
    pub discretization: Vec<usize>,
    pub mu: Vec<f64>,
}

pub fn schedule(config: &TrainConfig, step: u32, points: usize) -> ScheduleView {
    let total = config.schedule.total_steps.max(1);
    let steps: Vec<u32> =
        (0..points.max(2)).map(|i| (i as u64 * (total - 1) as u64 / (points.max(2) - 1) as u64) as u32).collect();
    let n = config.discretization(step);
    ScheduleView {
        step,
        total_steps: total,
        grid: if n >= 2 { karras_grid(n) } else { Vec::new() },
        discretization: steps.iter().map(|&k| config.discretization(k)).collect(),
        mu: steps.iter().map(|&k| config.target_ema(k)).collect(),
        steps,
    }
}
