//! The noise of sampling and editing (`docs/paper.md#sampling-algorithm-1`): seeded Gaussian
//! draws in which each sample's noise depends only on its own batch row, a batch noised to a
//! level t, and Algorithm 1's renoising of a sample at eps up to a time tau. The ODE sampler,
//! consistency sampling, editing and the page's views all start from these draws, so the same
//! seed gives every kind of model the same noise.

use crate::backend::{BTensor, Backend, RandomKey};
use crate::schedule::EPS;

/// One value per sample, for the per-sample coefficients of [`ElementwiseOps::scale_add`](crate::backend::ElementwiseOps::scale_add).
fn per_sample<B: Backend>(be: &B, count: usize, v: f64) -> BTensor<B> {
    be.upload(&vec![v as f32; count], &[count])
}

/// `z ~ N(0, I)` of `shape` from Philox stream `stream`: value i of a batch is draw i, so
/// sample n's noise is the same whatever the batch size. `first` is the batch row of the first
/// sample of `shape` (0 but for a slice of a batch: see [`crate::sample::sample_rows`]); the functions below
/// pass it through.
pub(crate) fn noise<B: Backend>(be: &B, shape: &[usize], seed: u64, stream: u32, first: usize) -> BTensor<B> {
    let mut batch = shape.to_vec();
    batch[0] += first;
    let z = be.empty(&batch);
    be.random_normal(RandomKey { seed, step: 0, stream }, &z);
    if first == 0 {
        z
    } else {
        be.rows(&z, first..batch[0])
    }
}

/// `x0 + t z`, or `t z` without x0, with z from stream 0: a batch noised to level t (the
/// start of sampling, editing and SDEdit; the page's denoising demo).
pub(crate) fn noised<B: Backend>(
    be: &B,
    x0: Option<&BTensor<B>>,
    shape: &[usize],
    t: f64,
    seed: u64,
    first: usize,
) -> BTensor<B> {
    let count = shape[0];
    let z = noise(be, shape, seed, 0, first);
    let out = be.empty(shape);
    match x0 {
        Some(x0) => be.scale_add(&per_sample(be, count, 1.0), x0, &per_sample(be, count, t), &z, &out),
        None => be.scale_add(&per_sample(be, count, t), &z, &per_sample(be, count, 0.0), &z, &out),
    }
    out
}

/// The noising half of a step of Algorithm 1: `x + sqrt(tau^2 - eps^2) z`, z from stream
/// `stream` (x is a sample at eps, so this brings it to time tau).
pub(crate) fn renoise<B: Backend>(
    be: &B,
    x: &BTensor<B>,
    tau: f64,
    seed: u64,
    stream: u32,
    first: usize,
) -> BTensor<B> {
    let count = x.dim(0);
    let z = noise(be, &x.shape, seed, stream, first);
    let noised = be.empty(&x.shape);
    be.scale_add(&per_sample(be, count, 1.0), x, &per_sample(be, count, (tau * tau - EPS * EPS).sqrt()), &z, &noised);
    noised
}
