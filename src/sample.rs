//! Sampling, `consistency-models.md` section 3: one step from pure noise at T, or Algorithm 1's
//! multistep refinement at chosen time points. Seeded: the same seed gives the same digits on
//! every backend, for any batch size (each sample's noise depends only on its own index).

use crate::backend::{BTensor, Backend, RandomKey};
use crate::model::ConsistencyModel;
use crate::schedule::{EPS, T};

/// `count` samples `[count, 1, 28, 28]` (not clamped) from weights `params`: `x = f(T z, T)`,
/// then for each time point tau, descending in (eps, T): `x = f(x + sqrt(tau^2 - eps^2) z, tau)`
/// with fresh noise z. The noise of refinement step s is Philox stream s + 1 (stream 0 is x_T).
pub fn sample<B: Backend>(
    be: &B,
    model: &ConsistencyModel,
    params: &BTensor<B>,
    count: usize,
    time_points: &[f64],
    seed: u64,
) -> crate::Result<BTensor<B>> {
    if let Some(bad) = time_points.iter().find(|&&t| !(t > EPS && t < T)) {
        return Err(crate::Error::Invalid(format!("time point {bad} is outside (eps, T) = ({EPS}, {T})")));
    }
    if time_points.windows(2).any(|w| w[1] >= w[0]) {
        return Err(crate::Error::Invalid(format!("time points must decrease: {time_points:?}")));
    }
    let shape = [count, 1, 28, 28];
    let per_sample = |v: f64| be.upload(&vec![v as f32; count], &[count]);
    // x + scale * z, z ~ N(0, I) from `stream` (x = 0 for the start).
    let add_noise = |x: Option<&BTensor<B>>, scale: f64, stream: u32| {
        let z = be.empty(&shape);
        be.random_normal(RandomKey { seed, step: 0, stream }, &z);
        let out = be.empty(&shape);
        match x {
            Some(x) => be.scale_add(&per_sample(1.0), x, &per_sample(scale), &z, &out),
            None => be.scale_add(&per_sample(scale), &z, &per_sample(0.0), &z, &out),
        }
        out
    };
    let mut x = model.forward(be, params, &add_noise(None, T, 0), &vec![T; count]).0;
    for (s, &tau) in time_points.iter().enumerate() {
        let noised = add_noise(Some(&x), (tau * tau - EPS * EPS).sqrt(), s as u32 + 1);
        x = model.forward(be, params, &noised, &vec![tau; count]).0;
    }
    Ok(x)
}
