//! Consistency models (Song et al., 2023) trained and sampled on hand-written WGSL compute
//! shaders. The same Rust core runs natively (tests, benchmarks, the `cm` CLI) and in the browser
//! (WebAssembly + WebGPU).
//!
//! Layers, from the bottom up:
//! - [`gpu`]: the wgpu device and a launcher (pipeline cache, buffer pool, recording of many
//!   dispatches into one submission). Knows nothing of the ops.
//! - [`backend`]: the [`backend::Backend`] trait, the one interface model code uses, with its GPU
//!   implementation (the WGSL kernels in `shaders/`) and its CPU twin (plain Rust).
//! - [`random`]: Philox counter-based random numbers, shared by both backends.
//! - [`data`]: the IDX format (plain or gzipped, validated) and the MNIST digits.
//! - [`nn`]: layers with hand-written backward passes, the reference U-Net and the MNIST
//!   classifier, Adam, and flat weights as safetensors.
//! - [`model`]: the network in a preconditioning: the consistency function `f(x, t)`, or the
//!   EDM denoiser `D(x, t)` of the diffusion teacher.
//! - [`noise`]: the seeded noise of sampling and editing: noise a batch to a level, renoise.
//! - [`ode`]: the probability-flow ODE's Euler and Heun steps and the teacher's sampler.
//! - [`schedule`]: the schedule math of consistency training (parameterization, time grid, CT and
//!   improved-CT curricula, choice of noise level, weighting), in f64 on the host.
//! - [`perceptual`]: the LPIPS-style perceptual distance on a frozen digit network, one of the
//!   distances training can use.
//! - [`vocabulary`]: one name table per enum a person names, shared by checkpoints, `cm` and
//!   the page.
//! - [`recipe`]: a run's configuration: the objective, the knobs, the paper's recipes.
//! - [`train`]: training, one recorded step at a time, for every objective (consistency
//!   training and distillation, the diffusion teacher, progressive distillation, tuning), and
//!   the MNIST classifier's training.
//! - [`sample`]: one-step and multistep sampling.
//! - [`views`]: what the page draws to show the idea: a digit's noise strip mapped back by f,
//!   multistep sampling step by step, the schedule.
//! - [`edit`]: zero-shot editing (Algorithm 4: inpainting, super-resolution), denoising,
//!   interpolation and SDEdit, on a trained model.
//! - [`image`]: digits as gray levels and PNG grids.
//! - [`checkpoint`]: a run's whole state in safetensors, checked on load.
//! - [`eval`]: sample quality: the MNIST-FID, legibility and class histogram, and the
//!   classifier's readouts.
//! - `figures` (native, with the `cli` feature): the paper's figures as PNG charts from recorded
//!   runs' logs (`cm plot`).
//! - [`bench`](mod@bench): kernel and network timings on any backend.
//! - [`selftest`]: the GPU checked against the CPU twin wherever the engine runs (the page).
//! - [`session`]: a run held on one backend as an application uses it: train, sample, view,
//!   edit, classify, save (the page's engine; natively tested).
//! - `web` (wasm32 only): the browser binding over a session, WebGPU detection, the page's
//!   constants.

pub mod backend;
pub mod bench;
pub mod checkpoint;
pub mod data;
pub mod edit;
pub mod eval;
#[cfg(all(feature = "cli", not(target_arch = "wasm32")))]
pub mod figures;
pub mod gpu;
pub mod image;
pub mod model;
pub mod nn;
pub mod noise;
pub mod ode;
pub mod perceptual;
pub mod random;
pub mod recipe;
pub mod sample;
pub mod schedule;
pub mod selftest;
pub mod session;
pub mod tensor;
pub mod train;
pub mod views;
pub mod vocabulary;

#[cfg(target_arch = "wasm32")]
pub mod web;

/// Everything that can go wrong, with a message a person can act on.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("no usable GPU adapter: {0}")]
    NoAdapter(String),
    #[error("could not open the GPU device: {0}")]
    Device(String),
    #[error("GPU error: {0}")]
    Gpu(String),
    #[error("{0}")]
    Invalid(String),
}

pub type Result<T> = std::result::Result<T, Error>;
