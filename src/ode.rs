//! The probability-flow ODE of `docs/paper.md` section 1, `dx/dt = (x - D(x, t)) / t`,
//! its Euler and Heun steps, and the diffusion teacher's deterministic sampler on the Karras
//! grid: the baseline a consistency model is measured against (section 8), and the solver step
//! of consistency distillation (section 4).

use std::ops::Range;

use crate::backend::{BTensor, Backend};
use crate::image::digit_shape;
use crate::model::Model;
use crate::noise::noised;
use crate::schedule::{karras_grid, T};
use crate::vocabulary::Named;

/// A denoiser: `D(x, t)`, an estimate of `E[x_0 | x_t]` for a batch x `[N, 1, H, W]` with one
/// time per sample.
pub trait Denoise<B: Backend> {
    fn denoise(&self, be: &B, x: &BTensor<B>, times: &[f64]) -> BTensor<B>;
}

/// A trained EDM denoiser (section 4): a [`Model`] with `Preconditioning::Denoiser`, its
/// weights, and for a class-conditional one the label of each sample (empty: none) and the
/// classifier-free guidance weight w: `D_w = D(x, t) + w (D(x, t, y) - D(x, t))`, where `D(x,
/// t)` is the same network without a label (label dropout trained it). w = 1 is the plain
/// conditional denoiser; w > 1 pushes each sample further towards its label, for one more
/// evaluation per step.
pub struct Teacher<'a, B: Backend> {
    pub model: &'a Model,
    pub params: &'a BTensor<B>,
    pub labels: &'a [Option<u8>],
    pub guidance: f64,
}

impl<B: Backend> Denoise<B> for Teacher<'_, B> {
    fn denoise(&self, be: &B, x: &BTensor<B>, times: &[f64]) -> BTensor<B> {
        let conditional = self.model.forward(be, self.params, x, times, self.labels).0;
        if self.guidance == 1.0 || self.labels.iter().all(Option::is_none) {
            return conditional;
        }
        let unconditional = self.model.forward(be, self.params, x, times, &[]).0;
        let w = self.guidance;
        // A dropped label gets the unconditional output whatever w is (both terms agree).
        let out = be.empty(&x.shape);
        be.scale_add(
            &per_sample(be, times.iter().map(|_| 1.0 - w)),
            &unconditional,
            &per_sample(be, times.iter().map(|_| w)),
            &conditional,
            &out,
        );
        out
    }
}

/// Checks a guidance weight: finite and at least 1 (1: none), and only for a class-conditional
/// model.
pub fn check_guidance(model: &Model, guidance: f64) -> crate::Result<()> {
    if !(guidance.is_finite() && guidance >= 1.0) {
        return Err(crate::Error::Invalid(format!("the guidance weight must be at least 1 (1: none), got {guidance}")));
    }
    if guidance != 1.0 && !model.is_conditional() {
        return Err(crate::Error::Invalid("guidance needs a class-conditional teacher".into()));
    }
    Ok(())
}

/// The one-step ODE solvers of section 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Solver {
    /// First order: one denoiser evaluation per step.
    Euler,
    /// Second order: an Euler step, then the average of the slopes at both ends (two
    /// evaluations per step).
    Heun,
}

impl Named for Solver {
    const WHAT: &'static str = "ODE solver";
    const NAMES: &'static [(Self, &'static str)] = &[(Solver::Euler, "euler"), (Solver::Heun, "heun")];
}

/// One value per sample.
fn per_sample<B: Backend>(be: &B, values: impl Iterator<Item = f64>) -> BTensor<B> {
    let values: Vec<f32> = values.map(|v| v as f32).collect();
    be.upload(&values, &[values.len()])
}

/// `x + h (x - D) / t = (1 + h / t) x - (h / t) D` with `h = t_to - t_from`, per sample: an Euler
/// step's update written as one fused op, scaled by `share` (1 for Euler, 1/2 for each half of
/// Heun's average).
fn add_slope<B: Backend>(
    be: &B,
    base: &BTensor<B>,
    x: &BTensor<B>,
    d: &BTensor<B>,
    t: &[f64],
    h: &[f64],
    share: f64,
) -> BTensor<B> {
    // base + share h (x - d) / t, as base + (share h / t) x - (share h / t) d.
    let k: Vec<f64> = t.iter().zip(h).map(|(&t, &h)| share * h / t).collect();
    let ones = per_sample(be, t.iter().map(|_| 1.0));
    let with_x = be.empty(&x.shape);
    be.scale_add(&ones, base, &per_sample(be, k.iter().copied()), x, &with_x);
    let out = be.empty(&x.shape);
    be.scale_add(&ones, &with_x, &per_sample(be, k.iter().map(|k| -k)), d, &out);
    out
}

/// One step of `solver` from `t_from` to `t_to` (one pair of times per sample), section 1:
/// Euler `x' = x + h d(x, t_from)`, Heun `x' = x + h (d(x, t_from) + d(x_euler, t_to)) / 2`,
/// with `d(x, t) = (x - D(x, t)) / t` and `h = t_to - t_from`.
pub fn step<B: Backend>(
    be: &B,
    denoiser: &impl Denoise<B>,
    solver: Solver,
    x: &BTensor<B>,
    t_from: &[f64],
    t_to: &[f64],
) -> BTensor<B> {
    assert!(t_from.len() == x.dim(0) && t_to.len() == x.dim(0), "one pair of times per sample");
    let h: Vec<f64> = t_from.iter().zip(t_to).map(|(&a, &b)| b - a).collect();
    let d_from = denoiser.denoise(be, x, t_from);
    let euler = add_slope(be, x, x, &d_from, t_from, &h, 1.0);
    match solver {
        Solver::Euler => euler,
        Solver::Heun => {
            let d_to = denoiser.denoise(be, &euler, t_to);
            let half = add_slope(be, x, x, &d_from, t_from, &h, 0.5);
            add_slope(be, &half, &euler, &d_to, t_to, &h, 0.5)
        }
    }
}

/// Denoiser evaluations of [`sample`] with `steps` steps: Heun's last step, to eps, is an Euler
/// step (as in EDM's sampler, where it ends at t = 0), so 18 Heun steps take 35 evaluations.
pub fn evaluations(solver: Solver, steps: usize) -> usize {
    match solver {
        Solver::Euler => steps,
        Solver::Heun => (2 * steps).saturating_sub(1),
    }
}

/// Samples `rows` of a batch `[rows.len(), 1, 28, 28]` from the denoiser by integrating the ODE
/// from T to eps in `steps` steps on the Karras grid of `steps + 1` points. The start is `T z`
/// with z drawn as [`crate::sample::sample`] draws it, so both kinds of model start from the
/// same noise for the same seed (and a slice of rows is exactly those rows of the batch).
pub fn sample<B: Backend>(
    be: &B,
    denoiser: &impl Denoise<B>,
    solver: Solver,
    steps: usize,
    rows: Range<usize>,
    seed: u64,
) -> crate::Result<BTensor<B>> {
    if steps == 0 {
        return Err(crate::Error::Invalid("the ODE sampler needs at least one step".into()));
    }
    let count = rows.len();
    let grid: Vec<f64> = karras_grid(steps + 1).into_iter().rev().collect();
    let mut x = noised(be, None, &digit_shape(count), T, seed, rows.start);
    for (i, pair) in grid.windows(2).enumerate() {
        let solver = if i + 1 == steps { Solver::Euler } else { solver };
        x = step(be, denoiser, solver, &x, &vec![pair[0]; count], &vec![pair[1]; count]);
    }
    Ok(x)
}
