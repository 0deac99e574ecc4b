//! Sampling, `docs/paper.md#sampling-algorithm-1`: one step from pure noise at T, or Algorithm 1's
//! multistep refinement at chosen time points. Seeded: the same seed gives the same digits on
//! every backend, for any batch size (each sample's noise depends only on its own index).
//!
//! The steps themselves (noise a point to a time, apply f) are shared with zero-shot editing
//! ([`crate::edit`]), which runs the same loop with a projection after every step.

use std::ops::Range;

use crate::backend::{BTensor, Backend};
use crate::image::{digit_shape, PIXELS};
use crate::model::{Model, Preconditioning};
use crate::noise::{noised, renoise};
use crate::ode::{self, Solver, Teacher};
use crate::schedule::{EPS, T};
use crate::vocabulary::Named;

/// `count` samples `[count, 1, 28, 28]` (not clamped) from weights `params`: `x = f(T z, T)`,
/// then for each time point tau, descending in (eps, T): `x = f(x + sqrt(tau^2 - eps^2) z, tau)`
/// with fresh noise z. The noise of refinement step s is Philox stream s + 1 (stream 0 is x_T).
pub fn sample<B: Backend>(
    be: &B,
    model: &Model,
    params: &BTensor<B>,
    count: usize,
    time_points: &[f64],
    seed: u64,
) -> crate::Result<BTensor<B>> {
    sample_rows(be, model, params, 0..count, time_points, seed, None)
}

/// Samples `rows` of the batch [`sample`] would draw with this seed, and only those: the page's
/// CPU workers each draw a slice of one batch, and together give exactly `sample`'s digits.
/// A class-conditional model draws `digit` (None: any digit, the label-dropout token).
pub fn sample_rows<B: Backend>(
    be: &B,
    model: &Model,
    params: &BTensor<B>,
    rows: Range<usize>,
    time_points: &[f64],
    seed: u64,
    digit: Option<u8>,
) -> crate::Result<BTensor<B>> {
    check_time_points(time_points, false)?;
    let labels = labels_for(model, digit, rows.len())?;
    let first = rows.start;
    let x = start(be, model, params, None, &digit_shape(rows.len()), T, seed, first, &labels);
    Ok(refine(be, model, params, x, time_points, seed, first, &labels))
}

/// `count` copies of `digit` for a class-conditional model; an error for a digit the model
/// cannot be asked for.
pub fn labels_for(model: &Model, digit: Option<u8>, count: usize) -> crate::Result<Vec<Option<u8>>> {
    match digit {
        None => Ok(Vec::new()),
        Some(_) if !model.is_conditional() => Err(crate::Error::Invalid(
            "this model is unconditional: it was not trained with labels, so it cannot be asked for a digit".into(),
        )),
        Some(d) if d as usize >= model.net.classes => {
            Err(crate::Error::Invalid(format!("digit {d} is not one of the model's {} classes", model.net.classes)))
        }
        Some(d) => Ok(vec![Some(d); count]),
    }
}

/// Samples [`Sampler::draw`] draws at a time.
pub const DRAW_CHUNK: usize = 500;

/// How a model draws digits: a consistency model in one step from T plus Algorithm 1's
/// refinement steps, or the diffusion teacher by integrating its probability-flow ODE.
#[derive(Clone, Debug, PartialEq)]
pub enum Sampler {
    Consistency {
        time_points: Vec<f64>,
    },
    /// The teacher's ODE, with classifier-free guidance weight `guidance` when a digit is
    /// asked for (1: none; see [`Teacher`]).
    Ode {
        solver: Solver,
        steps: usize,
        guidance: f64,
    },
}

impl Sampler {
    /// The sampler of `model`'s kind: refinement `time_points` for a consistency model, `solver`
    /// ("heun" or "euler") and `steps` for a teacher (which has no refinement points).
    pub fn for_model(model: &Model, time_points: &[f64], solver: &str, steps: usize) -> crate::Result<Sampler> {
        match model.preconditioning {
            Preconditioning::Consistency => {
                check_time_points(time_points, false)?;
                Ok(Sampler::Consistency { time_points: time_points.to_vec() })
            }
            Preconditioning::Denoiser if !time_points.is_empty() => Err(crate::Error::Invalid(
                "a diffusion teacher samples by its ODE solver: give --solver and --steps, not time points".into(),
            )),
            Preconditioning::Denoiser => {
                if steps == 0 {
                    return Err(crate::Error::Invalid("the ODE sampler needs at least one step".into()));
                }
                Ok(Sampler::Ode { solver: Solver::parse(solver)?, steps, guidance: 1.0 })
            }
        }
    }

    /// A teacher's sampler with classifier-free guidance weight `guidance` (checked against
    /// the model); a consistency model's is returned as it is, for w = 1 only.
    pub fn with_guidance(self, model: &Model, guidance: f64) -> crate::Result<Sampler> {
        ode::check_guidance(model, guidance)?;
        match self {
            Sampler::Ode { solver, steps, .. } => Ok(Sampler::Ode { solver, steps, guidance }),
            Sampler::Consistency { .. } if guidance == 1.0 => Ok(self),
            Sampler::Consistency { .. } => Err(crate::Error::Invalid(
                "guidance is for a diffusion teacher; a distilled model has its teacher's built in".into(),
            )),
        }
    }

    /// Network evaluations per sample (a guided teacher asked for a digit takes twice as many).
    pub fn evaluations(&self) -> usize {
        match self {
            Sampler::Consistency { time_points } => time_points.len() + 1,
            Sampler::Ode { solver, steps, guidance } => {
                ode::evaluations(*solver, *steps) * if *guidance == 1.0 { 1 } else { 2 }
            }
        }
    }

    /// For logs and tables, e.g. "2 steps (80, 0.8)" or "heun, 18 steps (35 evaluations)".
    pub fn describe(&self) -> String {
        match self {
            Sampler::Consistency { time_points } if time_points.is_empty() => "1 step".into(),
            Sampler::Consistency { time_points } => {
                let points: Vec<String> = time_points.iter().map(|t| t.to_string()).collect();
                format!("{} steps ({T}, {})", time_points.len() + 1, points.join(", "))
            }
            Sampler::Ode { solver, steps, guidance } => {
                let guided = if *guidance == 1.0 { String::new() } else { format!(", guidance {guidance}") };
                format!("{}, {steps} steps{guided} ({} evaluations)", solver.name(), self.evaluations())
            }
        }
    }

    /// `count` samples (of `digit`, for a class-conditional model) clamped to [-1, 1] on the
    /// host, as quality is measured: drawn [`DRAW_CHUNK`] at a time so that 10,000 of them fit
    /// in memory. Chunk c draws with seed `seed + c << 32`, so the set depends only on seed and
    /// count.
    pub async fn draw<B: Backend>(
        &self,
        be: &B,
        model: &Model,
        params: &BTensor<B>,
        count: usize,
        seed: u64,
        digit: Option<u8>,
    ) -> crate::Result<Vec<f32>> {
        let mut out = Vec::with_capacity(count * PIXELS);
        for (c, start) in (0..count).step_by(DRAW_CHUNK).enumerate() {
            let n = DRAW_CHUNK.min(count - start);
            let x = self.sample(be, model, params, 0..n, seed.wrapping_add((c as u64) << 32), digit)?;
            out.extend(be.read(&x).await?.into_iter().map(|v| v.clamp(-1.0, 1.0)));
        }
        Ok(out)
    }

    /// Rows `rows` of the batch this sampler draws with `seed`, with weights `params`; of
    /// `digit` for a class-conditional model (None: any digit).
    pub fn sample<B: Backend>(
        &self,
        be: &B,
        model: &Model,
        params: &BTensor<B>,
        rows: Range<usize>,
        seed: u64,
        digit: Option<u8>,
    ) -> crate::Result<BTensor<B>> {
        match self {
            Sampler::Consistency { time_points } => sample_rows(be, model, params, rows, time_points, seed, digit),
            Sampler::Ode { solver, steps, guidance } => {
                let labels = labels_for(model, digit, rows.len())?;
                let teacher = Teacher { model, params, labels: &labels, guidance: *guidance };
                ode::sample(be, &teacher, *solver, *steps, rows, seed)
            }
        }
    }
}

/// Refuses time points that do not decrease strictly within (eps, T), or (eps, T] when
/// `t_allowed` (editing may start at T itself; Algorithm 1's refinement points may not).
pub(crate) fn check_time_points(time_points: &[f64], t_allowed: bool) -> crate::Result<()> {
    let (inside, range): (fn(f64) -> bool, _) =
        if t_allowed { (|t| t > EPS && t <= T, "(eps, T]") } else { (|t| t > EPS && t < T, "(eps, T)") };
    let (open, close) = (&range[..1], &range[range.len() - 1..]);
    if let Some(bad) = time_points.iter().find(|&&t| !inside(t)) {
        return Err(crate::Error::Invalid(format!("time point {bad} is outside {range} = {open}{EPS}, {T}{close}")));
    }
    if time_points.windows(2).any(|w| w[1] >= w[0]) {
        return Err(crate::Error::Invalid(format!("time points must decrease: {time_points:?}")));
    }
    Ok(())
}

/// `f(x0 + t z, t)` with z from stream 0, or `f(t z, t)` without x0: the first step of
/// sampling (from pure noise at T), of zero-shot editing and of SDEdit (from a known image).
/// `labels`: one per sample for a class-conditional model, or none.
#[allow(clippy::too_many_arguments)]
pub(crate) fn start<B: Backend>(
    be: &B,
    model: &Model,
    params: &BTensor<B>,
    x0: Option<&BTensor<B>>,
    shape: &[usize],
    t: f64,
    seed: u64,
    first: usize,
    labels: &[Option<u8>],
) -> BTensor<B> {
    let x = noised(be, x0, shape, t, seed, first);
    model.forward(be, params, &x, &vec![t; shape[0]], labels).0
}

/// One step of Algorithm 1: `f(x + sqrt(tau^2 - eps^2) z, tau)`, z from stream `stream`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn refine_step<B: Backend>(
    be: &B,
    model: &Model,
    params: &BTensor<B>,
    x: &BTensor<B>,
    tau: f64,
    seed: u64,
    stream: u32,
    first: usize,
    labels: &[Option<u8>],
) -> BTensor<B> {
    let noised = renoise(be, x, tau, seed, stream, first);
    model.forward(be, params, &noised, &vec![tau; x.dim(0)], labels).0
}

/// Algorithm 1's loop from an x at the first time point: step s (tau = `time_points[s]`) draws
/// its noise from stream s + 1, after the start's stream 0.
#[allow(clippy::too_many_arguments)]
pub(crate) fn refine<B: Backend>(
    be: &B,
    model: &Model,
    params: &BTensor<B>,
    mut x: BTensor<B>,
    time_points: &[f64],
    seed: u64,
    first: usize,
    labels: &[Option<u8>],
) -> BTensor<B> {
    for (s, &tau) in time_points.iter().enumerate() {
        x = refine_step(be, model, params, &x, tau, seed, s as u32 + 1, first, labels);
    }
    x
}
