//! Zero-shot editing with a trained consistency model, `docs/paper.md` section 7
//! (`docs/paper.md#zero-shot-editing-algorithm-4`): inpainting and super-resolution through Algorithm 4,
//! denoising, interpolation between two noises, and SDEdit-style editing of rough strokes. No
//! edit needs training of its own: each is a few evaluations of `f` with noise in between.
//!
//! Seeded like [`crate::sample::sample`]: the noise of step s (from 0) is Philox stream s of the
//! seed, and image n's noise depends only on n, so results do not depend on the batch size (nor,
//! up to rounding, on the backend).
//! Images are `[N, 1, 28, 28]` in the model's [-1, 1] scale; results are not clamped.
//!
//! The default time points below are this project's (the paper's editing runs used large image
//! models and their own grids), chosen by eye on the small model trained for 6,000 steps (README):
//! a start at T so that the generated part may become any digit, then enough steps for the
//! projection and the model to make the known and the generated parts agree. One step at T
//! leaves visible noise; two (80, 0.8) join the parts less well than five.

use crate::backend::{BTensor, Backend};
use crate::image::{digit_shape, PIXELS, SIDE};
use crate::model::Model;
use crate::noise::noise;
use crate::sample::{check_time_points, refine, refine_step, start};
use crate::schedule::{EPS, T};
use crate::Error;

/// Default time points of [`inpaint`].
pub const INPAINT_TIME_POINTS: &[f64] = &[80.0, 20.0, 5.0, 2.0, 0.8];
/// Default time points of [`super_resolve`] (from 7 x 7, fewer steps left the tiles showing).
pub const SUPER_RESOLVE_TIME_POINTS: &[f64] = &[80.0, 20.0, 5.0, 2.0, 0.8];
/// Default noise level of [`sdedit`]: enough noise (the data spans [-1, 1]) to wash out the
/// blockiness of strokes (at 1 or 2 it stays), not so much that their shape is lost (at 10 the
/// digit drifts away from the drawing).
pub const SDEDIT_START: f64 = 5.0;
/// Default refinement time points of [`sdedit`], after [`SDEDIT_START`].
pub const SDEDIT_TIME_POINTS: &[f64] = &[0.8];

/// Algorithm 4 as written in section 7, for the transforms of [`ElementwiseOps::keep_known`](crate::backend::ElementwiseOps::keep_known): with
/// `patch = 1` the known part is the pixels where `keep` is 1 (inpainting); with `patch = p` it
/// is the p x p tile means where `keep` is 1 (super-resolution keeps every tile's mean).
///
/// `y` `[N, 1, 28, 28]` holds the reference images (only their known part is read), `keep`
/// `[N, 1, 28, 28]` or `[1, 1, 28, 28]` (one mask for all) is 1 where y is known and 0 where
/// the model generates, `patch` divides 28, and `time_points` `t_1 > ... > t_N` lie in
/// (eps, T] (t_1 = T is the usual start). With the projection `P(x) = A^-1[(A y)(1 - Omega) +
/// (A x) Omega]`:
///
/// ```text
/// y = P(0);  x = f(y + t_1 z, t_1);  x = P(x)
/// for n = 2..N:  x = P( f(x + sqrt(t_n^2 - eps^2) z, t_n) )
/// ```
///
/// Step n draws z from stream n - 1, as [`crate::sample::sample`] does, so with `keep` all 0
/// and time points `[T, tau...]` this is exactly multistep sampling at `[tau...]`.
#[allow(clippy::too_many_arguments)]
pub fn zero_shot<B: Backend>(
    be: &B,
    model: &Model,
    params: &BTensor<B>,
    y: &BTensor<B>,
    keep: &BTensor<B>,
    patch: usize,
    time_points: &[f64],
    seed: u64,
) -> crate::Result<BTensor<B>> {
    check_images("reference images y", &y.shape)?;
    if keep.shape != y.shape && keep.shape != digit_shape(1) {
        return Err(Error::Invalid(format!(
            "the keep mask is {:?}; it must be {:?} (one per image) or [1, 1, {SIDE}, {SIDE}] (one for all)",
            keep.shape, y.shape
        )));
    }
    if patch == 0 || !SIDE.is_multiple_of(patch) {
        return Err(Error::Invalid(format!("patch size {patch} does not divide the image side {SIDE}")));
    }
    if time_points.is_empty() {
        return Err(Error::Invalid("zero-shot editing needs at least one time point".into()));
    }
    check_time_points(time_points, true)?;
    let project = |x: &BTensor<B>| {
        let out = be.empty(&y.shape);
        be.keep_known(patch, x, y, keep, &out);
        out
    };
    // y = A^-1[(A y)(1 - Omega)]: the known part alone, zero elsewhere.
    let known = project(&be.zeros(&y.shape));
    let mut x = project(&start(be, model, params, Some(&known), &y.shape, time_points[0], seed, 0, &[]));
    for (n, &t) in time_points.iter().enumerate().skip(1) {
        x = project(&refine_step(be, model, params, &x, t, seed, n as u32, 0, &[]));
    }
    Ok(x)
}

/// Fills the pixels where `keep` is 0 with digit strokes that fit the known pixels of `y`
/// (where `keep` is 1, which come back unchanged, bit for bit): [`zero_shot`] with A = identity.
pub fn inpaint<B: Backend>(
    be: &B,
    model: &Model,
    params: &BTensor<B>,
    y: &BTensor<B>,
    keep: &BTensor<B>,
    time_points: &[f64],
    seed: u64,
) -> crate::Result<BTensor<B>> {
    zero_shot(be, model, params, y, keep, 1, time_points, seed)
}

/// 28 x 28 digits `[N, 1, 28, 28]` whose p x p tile means equal the pixels of `low_res`
/// `[N, 1, 14, 14]` (p = 2) or `[N, 1, 7, 7]` (p = 4), for example a digit averaged over its
/// tiles: [`zero_shot`] with the per-tile mean transform and every tile's mean known. The low
/// resolution image, upsampled by repetition, serves as y (its tile means are its pixels).
pub fn super_resolve<B: Backend>(
    be: &B,
    model: &Model,
    params: &BTensor<B>,
    low_res: &BTensor<B>,
    time_points: &[f64],
    seed: u64,
) -> crate::Result<BTensor<B>> {
    let shape = &low_res.shape;
    let side = shape.get(2).copied().unwrap_or(0);
    if shape.len() != 4 || shape[0] == 0 || shape[1] != 1 || shape[3] != side || !(side == 7 || side == 14) {
        return Err(Error::Invalid(format!(
            "low-resolution images are {shape:?}; they must be [N, 1, 14, 14] or [N, 1, 7, 7]"
        )));
    }
    let mut y = low_res.clone();
    while y.dim(2) < SIDE {
        let up = be.empty(&[y.dim(0), 1, 2 * y.dim(2), 2 * y.dim(3)]);
        be.upsample2x(&y, &up);
        y = up;
    }
    let keep = be.upload(&[1.0; PIXELS], &digit_shape(1));
    zero_shot(be, model, params, &y, &keep, SIDE / side, time_points, seed)
}

/// Denoising (section 7): for `noisy = x + sigma z` with a known noise level sigma in
/// [eps, T], `f(noisy, sigma)`. At sigma = eps this is `noisy` itself (the boundary condition).
pub fn denoise<B: Backend>(
    be: &B,
    model: &Model,
    params: &BTensor<B>,
    noisy: &BTensor<B>,
    sigma: f64,
) -> crate::Result<BTensor<B>> {
    let count = check_images("noisy images", &noisy.shape)?;
    if !(EPS..=T).contains(&sigma) {
        return Err(Error::Invalid(format!("noise level {sigma} is outside [eps, T] = [{EPS}, {T}]")));
    }
    Ok(model.forward(be, params, noisy, &vec![sigma; count], &[]).0)
}

/// Interpolation (section 7): one digit `[alphas.len(), 1, 28, 28]` per alpha in [0, 1],
/// `f(T slerp(z_a, z_b, alpha), T)`, with z_a and z_b the noises that
/// [`crate::sample::sample`] starts its first sample from with `seed_a` and `seed_b` (so alpha 0
/// and 1 give exactly those one-step samples). The angle between z_a and z_b is measured on the
/// host from the same Philox draws; where it is zero (equal seeds) slerp is the straight line.
pub fn interpolate<B: Backend>(
    be: &B,
    model: &Model,
    params: &BTensor<B>,
    seed_a: u64,
    seed_b: u64,
    alphas: &[f64],
) -> crate::Result<BTensor<B>> {
    if alphas.is_empty() {
        return Err(Error::Invalid("interpolation needs at least one alpha".into()));
    }
    if let Some(bad) = alphas.iter().find(|a| !(0.0..=1.0).contains(*a)) {
        return Err(Error::Invalid(format!("interpolation weight {bad} is outside [0, 1]")));
    }
    let count = alphas.len();
    let one = digit_shape(1);
    let host_noise = |seed| {
        let key = crate::random::RandomKey { seed, step: 0, stream: 0 };
        (0..PIXELS as u32).map(|i| crate::random::normal(key, i) as f64).collect::<Vec<_>>()
    };
    let (a, b) = (host_noise(seed_a), host_noise(seed_b));
    let dot = |u: &[f64], v: &[f64]| u.iter().zip(v).map(|(p, q)| p * q).sum::<f64>();
    let cos = (dot(&a, &b) / (dot(&a, &a) * dot(&b, &b)).sqrt()).clamp(-1.0, 1.0);
    let theta = cos.acos();
    // slerp(z_a, z_b, alpha) = (sin((1 - alpha) theta) z_a + sin(alpha theta) z_b) / sin(theta),
    // times T; the coefficients are exactly T and 0 at alpha = 0 (and 0 and T at 1).
    let coefficients = |alpha: f64| {
        if theta.sin() > 1e-6 {
            (((1.0 - alpha) * theta).sin() / theta.sin(), (alpha * theta).sin() / theta.sin())
        } else {
            (1.0 - alpha, alpha)
        }
    };
    let (ca, cb): (Vec<f32>, Vec<f32>) = alphas
        .iter()
        .map(|&alpha| {
            let (ca, cb) = coefficients(alpha);
            ((T * ca) as f32, (T * cb) as f32)
        })
        .unzip();
    let shape = digit_shape(count);
    let (za, zb) = (be.empty(&shape), be.empty(&shape));
    let (one_a, one_b) = (noise(be, &one, seed_a, 0, 0), noise(be, &one, seed_b, 0, 0));
    for k in 0..count {
        be.copy(&one_a, &za.view(k * PIXELS, &one));
        be.copy(&one_b, &zb.view(k * PIXELS, &one));
    }
    let start = be.empty(&shape);
    be.scale_add(&be.upload(&ca, &[count]), &za, &be.upload(&cb, &[count]), &zb, &start);
    Ok(model.forward(be, params, &start, &vec![T; count], &[]).0)
}

/// SDEdit-style editing of rough strokes `[N, 1, 28, 28]` (a drawing in the model's [-1, 1]
/// scale): noise them to `t_start` in (eps, T] and map back, `x = f(strokes + t_start z,
/// t_start)`, then refine at `time_points` (descending, below t_start) with Algorithm 1. The
/// noise hides the strokes' departures from real digits while their layout survives, so the
/// result is a digit shaped like the drawing. Noise streams as in [`crate::sample::sample`].
pub fn sdedit<B: Backend>(
    be: &B,
    model: &Model,
    params: &BTensor<B>,
    strokes: &BTensor<B>,
    t_start: f64,
    time_points: &[f64],
    seed: u64,
) -> crate::Result<BTensor<B>> {
    check_images("strokes", &strokes.shape)?;
    check_time_points(&[t_start], true)?;
    check_time_points(time_points, false)?;
    if let Some(bad) = time_points.iter().find(|&&t| t >= t_start) {
        return Err(Error::Invalid(format!("refinement time point {bad} is not below t_start = {t_start}")));
    }
    let x = start(be, model, params, Some(strokes), &strokes.shape, t_start, seed, 0, &[]);
    Ok(refine(be, model, params, x, time_points, seed, 0, &[]))
}

/// The batch size of images that must be `[N, 1, 28, 28]` with N >= 1.
fn check_images(what: &str, shape: &[usize]) -> crate::Result<usize> {
    match shape {
        &[n, 1, SIDE, SIDE] if n > 0 => Ok(n),
        _ => Err(Error::Invalid(format!("{what} are {shape:?}; they must be [N, 1, {SIDE}, {SIDE}]"))),
    }
}
