//! Zero-shot editing (`docs/paper.md#zero-shot-editing-algorithm-4`): every edit on the GPU equals the CPU;
//! inpainting keeps the known pixels bit for bit; super-resolution keeps the low-resolution
//! image; with nothing known Algorithm 4 is sampling; denoising at eps is the identity;
//! interpolation ends at the one-step samples of its seeds; bad arguments are refused. Random
//! (untrained) weights suffice: these are properties of the algorithms, not of a trained model.

mod common;

use common::*;
use consistency::backend::prelude::*;
use consistency::backend::{BTensor, RandomKey};
use consistency::edit::{self, denoise, inpaint, interpolate, sdedit, super_resolve, zero_shot};
use consistency::model::Model;
use consistency::nn::Widths;
use consistency::random;
use consistency::sample::sample;
use consistency::schedule::{c_skip, EPS, T};

const SIDE: usize = 28;
const PIXELS: usize = SIDE * SIDE;

fn model() -> Model {
    Model::new(Widths::TINY)
}

fn weights<B: Backend>(be: &B, model: &Model) -> BTensor<B> {
    let init = model.net.layout.init(9);
    be.upload(&init, &[init.len()])
}

fn images<B: Backend>(be: &B, count: usize, seed: u64) -> BTensor<B> {
    be.upload(&random_vec(count * PIXELS, seed), &[count, 1, SIDE, SIDE])
}

/// One mask per image: image k keeps the pixels left of column 8 + 6k.
fn per_image_mask(count: usize) -> Vec<f32> {
    (0..count * PIXELS).map(|i| if i % SIDE < 8 + 6 * (i / PIXELS) { 1.0 } else { 0.0 }).collect()
}

/// One mask for all: the top half is known.
fn top_half() -> Vec<f32> {
    (0..PIXELS).map(|i| if i / SIDE < SIDE / 2 { 1.0 } else { 0.0 }).collect()
}

/// p x p tile means of `[count, 28, 28]` images, in f64.
fn tile_means(values: &[f32], p: usize) -> Vec<f64> {
    let side = SIDE / p;
    let mut means = vec![0.0; values.len() / (p * p)];
    for (i, v) in values.iter().enumerate() {
        let (n, r, c) = (i / PIXELS, i % PIXELS / SIDE, i % SIDE);
        means[n * side * side + (r / p) * side + c / p] += *v as f64 / (p * p) as f64;
    }
    means
}

/// Runs every edit on `be` with the same inputs: the results, named, in a fixed order.
fn every_edit<B: Backend>(be: &B) -> Vec<(&'static str, Vec<f32>)> {
    let model = model();
    let p = weights(be, &model);
    let y = images(be, 2, 1);
    let mask = be.upload(&per_image_mask(2), &[2, 1, SIDE, SIDE]);
    let low7 = be.upload(&random_vec(2 * 49, 2), &[2, 1, 7, 7]);
    let low14 = be.upload(&random_vec(2 * 196, 3), &[2, 1, 14, 14]);
    let run = |t: BTensor<B>| read(be, &t);
    vec![
        ("inpaint", run(inpaint(be, &model, &p, &y, &mask, &[T, 2.0], 4).unwrap())),
        ("super-resolve 7x7", run(super_resolve(be, &model, &p, &low7, &[T, 0.8], 5).unwrap())),
        ("super-resolve 14x14", run(super_resolve(be, &model, &p, &low14, &[20.0], 6).unwrap())),
        ("denoise", run(denoise(be, &model, &p, &y, 0.5).unwrap())),
        ("interpolate", run(interpolate(be, &model, &p, 7, 8, &[0.0, 0.3, 1.0]).unwrap())),
        ("sdedit", run(sdedit(be, &model, &p, &y, 2.0, &[0.8], 9).unwrap())),
    ]
}

#[test]
fn every_edit_on_gpu_equals_cpu() {
    for ((name, on_gpu), (_, on_cpu)) in every_edit(&gpu()).into_iter().zip(every_edit(&cpu())) {
        // As for sampling (tests/sample.rs): the network's sums differ in order between the
        // tiled kernels and the CPU loops, and WGSL's log and cos in the Gaussian draws have
        // implementation-defined precision.
        assert_close(name, &on_gpu, &on_cpu, 1e-3, 1e-4);
    }
}

/// Inpainting returns y's known pixels bit for bit, with one mask per image and one for all.
fn inpainting_keeps_known_pixels<B: Backend>(be: &B) {
    let model = model();
    let p = weights(be, &model);
    let y = images(be, 2, 10);
    let y_values = read(be, &y);
    for (keep, shape) in [(per_image_mask(2), [2, 1, SIDE, SIDE]), (top_half(), [1, 1, SIDE, SIDE])] {
        let out = read(be, &inpaint(be, &model, &p, &y, &be.upload(&keep, &shape), &[T, 5.0, 0.8], 11).unwrap());
        let mut generated_differs = false;
        for i in 0..out.len() {
            if keep[i % keep.len()] == 1.0 {
                assert_eq!(out[i].to_bits(), y_values[i].to_bits(), "known pixel {i} changed");
            } else {
                generated_differs |= out[i] != y_values[i];
            }
        }
        assert!(generated_differs, "the unknown pixels must be generated, not copied");
    }
}

#[test]
fn inpainting_keeps_known_pixels_cpu() {
    inpainting_keeps_known_pixels(&cpu());
}

#[test]
fn inpainting_keeps_known_pixels_gpu() {
    inpainting_keeps_known_pixels(&gpu());
}

/// The p x p tile means of a super-resolved digit are the low-resolution pixels. Each output
/// pixel is `x + d` rounded once, with d an f32 sum of p^2 differences: at most about p^2 + 1
/// roundings of values the size of the largest |x| or |y|, so the tolerance is
/// `(p^2 + 2) * f32::EPSILON * that size`.
fn super_resolution_keeps_the_low_resolution_image<B: Backend>(be: &B) {
    let model = model();
    let p = weights(be, &model);
    for (side, seed) in [(7usize, 12u64), (14, 13)] {
        let patch = SIDE / side;
        let low = random_vec(2 * side * side, seed);
        let out = super_resolve(be, &model, &p, &be.upload(&low, &[2, 1, side, side]), &[T, 0.8], seed).unwrap();
        let out = read(be, &out);
        let scale = out.iter().chain(&low).fold(1.0f32, |m, v| m.max(v.abs())) as f64;
        let tol = (patch * patch + 2) as f64 * f32::EPSILON as f64 * scale;
        let means = tile_means(&out, patch);
        for (k, (mean, want)) in means.iter().zip(&low).enumerate() {
            assert!(
                (mean - *want as f64).abs() <= tol,
                "{side}x{side}: tile {k} has mean {mean}, not {want} (tol {tol})"
            );
        }
        // The detail is generated: the result is not the blocky upsampled image.
        assert!(out.iter().enumerate().any(|(i, v)| (*v as f64 - means[tile(i, patch)]).abs() > 1e-3), "no detail");
    }
}

/// Index of the tile of pixel i in [`tile_means`]'s order.
fn tile(i: usize, p: usize) -> usize {
    let side = SIDE / p;
    let (n, r, c) = (i / PIXELS, i % PIXELS / SIDE, i % SIDE);
    n * side * side + (r / p) * side + c / p
}

#[test]
fn super_resolution_keeps_the_low_resolution_image_cpu() {
    super_resolution_keeps_the_low_resolution_image(&cpu());
}

#[test]
fn super_resolution_keeps_the_low_resolution_image_gpu() {
    super_resolution_keeps_the_low_resolution_image(&gpu());
}

#[test]
fn with_nothing_known_algorithm_4_is_sampling() {
    // keep = 0: y projects to zero, the first step is f(0 + T z, T) with sampling's stream 0 and
    // each later step uses sampling's stream, so the results are the samples, bit for bit.
    let be = cpu();
    let model = model();
    let p = weights(&be, &model);
    let y = images(&be, 3, 14);
    let nothing = be.zeros(&[1, 1, SIDE, SIDE]);
    for (patch, points) in [(1, &[T][..]), (4, &[T][..]), (1, &[T, 0.8][..]), (2, &[T, 10.0, 0.5][..])] {
        let edited = read(&be, &zero_shot(&be, &model, &p, &y, &nothing, patch, points, 15).unwrap());
        let sampled = read(&be, &sample(&be, &model, &p, 3, &points[1..], 15).unwrap());
        assert_eq!(edited, sampled, "patch {patch}, time points {points:?}");
    }
    // And against the closed form with a zero network: f(T z, T) = c_skip(T) T z.
    let zeros = be.zeros(&[model.net.layout.len]);
    let out = read(&be, &zero_shot(&be, &model, &zeros, &y, &nothing, 1, &[T], 16).unwrap());
    let key = RandomKey { seed: 16, step: 0, stream: 0 };
    let expected: Vec<f32> = (0..out.len() as u32).map(|i| (c_skip(T) * T) as f32 * random::normal(key, i)).collect();
    assert_close("f(T z, T)", &out, &expected, 1e-6, 0.0);
}

#[test]
fn editing_does_not_depend_on_the_batch_size() {
    let be = cpu();
    let model = model();
    let p = weights(&be, &model);
    let keep = be.upload(&top_half(), &[1, 1, SIDE, SIDE]);
    let all = read(&be, &inpaint(&be, &model, &p, &images(&be, 3, 17), &keep, &[T, 2.0], 18).unwrap());
    let two = read(&be, &inpaint(&be, &model, &p, &images(&be, 2, 17), &keep, &[T, 2.0], 18).unwrap());
    assert_eq!(&all[..two.len()], &two[..], "image n's edit must not depend on the batch size");
}

/// f(y, eps) = y exactly: c_skip(eps) = 1 and c_out(eps) = 0 (section 2).
fn denoising_at_eps_is_the_identity<B: Backend>(be: &B) {
    let model = model();
    let p = weights(be, &model);
    let y = images(be, 2, 19);
    let bits = |v: Vec<f32>| v.into_iter().map(f32::to_bits).collect::<Vec<_>>();
    assert_eq!(bits(read(be, &denoise(be, &model, &p, &y, EPS).unwrap())), bits(read(be, &y)));
    // Above eps the network does change the image.
    assert_ne!(read(be, &denoise(be, &model, &p, &y, 0.5).unwrap()), read(be, &y));
}

#[test]
fn denoising_at_eps_is_the_identity_cpu() {
    denoising_at_eps_is_the_identity(&cpu());
}

#[test]
fn denoising_at_eps_is_the_identity_gpu() {
    denoising_at_eps_is_the_identity(&gpu());
}

#[test]
fn interpolation_runs_between_the_one_step_samples_of_its_seeds() {
    let be = cpu();
    let model = model();
    let p = weights(&be, &model);
    let out = read(&be, &interpolate(&be, &model, &p, 20, 21, &[0.0, 0.5, 1.0]).unwrap());
    let one_step = |seed| read(&be, &sample(&be, &model, &p, 1, &[], seed).unwrap());
    assert_eq!(&out[..PIXELS], &one_step(20)[..], "alpha 0 is f(T z_a, T)");
    assert_eq!(&out[2 * PIXELS..], &one_step(21)[..], "alpha 1 is f(T z_b, T)");
    // Equal seeds: the angle is zero and every alpha gives the same sample.
    let same = read(&be, &interpolate(&be, &model, &p, 20, 20, &[0.0, 0.4, 1.0]).unwrap());
    for k in 0..3 {
        // A straight line between equal noises: the start is T z up to an f32 rounding or two.
        assert_close("equal seeds", &same[k * PIXELS..(k + 1) * PIXELS], &one_step(20), 1e-5, 1e-5);
    }

    // With a zero network the output is c_skip(T) T slerp(z_a, z_b): two independent noises
    // are nearly orthogonal, and slerp keeps the norm midway where a straight line would lose
    // a factor of about sqrt(2).
    let zeros = be.zeros(&[model.net.layout.len]);
    let out = read(&be, &interpolate(&be, &model, &zeros, 20, 21, &[0.0, 0.5, 1.0]).unwrap());
    let norm = |k: usize| out[k * PIXELS..(k + 1) * PIXELS].iter().map(|v| (*v as f64).powi(2)).sum::<f64>().sqrt();
    let ends = (norm(0) + norm(2)) / 2.0;
    assert!((norm(1) / ends - 1.0).abs() < 0.05, "midway norm {} vs ends {ends}", norm(1));
}

#[test]
fn bad_arguments_are_refused() {
    let be = cpu();
    let model = model();
    let p = be.zeros(&[model.net.layout.len]);
    let y = images(&be, 2, 22);
    let keep = be.upload(&top_half(), &[1, 1, SIDE, SIDE]);
    let refused = |result: consistency::Result<BTensor<consistency::backend::cpu::CpuBackend>>, needle: &str| {
        let err = result.expect_err("refused").to_string();
        assert!(err.contains(needle), "expected an error about {needle:?}, got {err:?}");
    };
    for points in [&[][..], &[100.0][..], &[0.001][..], &[1.0, 2.0][..], &[T, T][..], &[f64::NAN][..]] {
        refused(zero_shot(&be, &model, &p, &y, &keep, 1, points, 0), "time point");
    }
    refused(
        zero_shot(&be, &model, &p, &images(&be, 1, 0).reshape(&[1, 1, 4, 196]), &keep, 1, &[T], 0),
        "[N, 1, 28, 28]",
    );
    refused(zero_shot(&be, &model, &p, &y, &be.zeros(&[3, 1, SIDE, SIDE]), 1, &[T], 0), "keep mask");
    refused(zero_shot(&be, &model, &p, &y, &keep, 3, &[T], 0), "patch size 3");
    refused(super_resolve(&be, &model, &p, &be.zeros(&[1, 1, 8, 8]), &[T], 0), "[N, 1, 7, 7]");
    refused(denoise(&be, &model, &p, &y, 0.001), "noise level");
    refused(denoise(&be, &model, &p, &y, 81.0), "noise level");
    refused(interpolate(&be, &model, &p, 0, 1, &[]), "at least one alpha");
    refused(interpolate(&be, &model, &p, 0, 1, &[0.5, 1.5]), "1.5");
    refused(sdedit(&be, &model, &p, &y, 100.0, &[], 0), "time point");
    refused(sdedit(&be, &model, &p, &y, 2.0, &[2.0], 0), "not below t_start");
    refused(sdedit(&be, &model, &p, &be.zeros(&[2, 2, SIDE, SIDE]), 2.0, &[], 0), "strokes");
}

#[test]
fn default_time_points_are_valid() {
    let be = cpu();
    let model = model();
    let p = be.zeros(&[model.net.layout.len]);
    let y = images(&be, 1, 23);
    let keep = be.upload(&top_half(), &[1, 1, SIDE, SIDE]);
    inpaint(&be, &model, &p, &y, &keep, edit::INPAINT_TIME_POINTS, 0).unwrap();
    super_resolve(&be, &model, &p, &be.zeros(&[1, 1, 7, 7]), edit::SUPER_RESOLVE_TIME_POINTS, 0).unwrap();
    sdedit(&be, &model, &p, &y, edit::SDEDIT_START, edit::SDEDIT_TIME_POINTS, 0).unwrap();
}

/// With trained weights (present only where a run was made: `runs/` is not in git), denoising
/// a model's own digit must bring it closer to the clean digit than the noisy input was.
#[test]
fn trained_model_denoises_its_own_digits() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/runs/small-ict-6k.safetensors");
    let Ok(bytes) = std::fs::read(path) else {
        eprintln!("skipped: {path} is not here");
        return;
    };
    let saved = consistency::checkpoint::Checkpoint::from_bytes(&bytes).unwrap();
    let be = cpu();
    let model = Model::new(saved.widths);
    let p = be.upload(saved.ema(), &[saved.ema().len()]);
    let count = 8;
    let clean = read(&be, &sample(&be, &model, &p, count, &[0.8], 24).unwrap());
    let sigma = 0.5;
    let key = RandomKey { seed: 25, step: 0, stream: 0 };
    let noisy: Vec<f32> =
        clean.iter().enumerate().map(|(i, v)| v + sigma as f32 * random::normal(key, i as u32)).collect();
    let denoised = read(&be, &denoise(&be, &model, &p, &be.upload(&noisy, &[count, 1, SIDE, SIDE]), sigma).unwrap());
    let mse = |v: &[f32]| v.iter().zip(&clean).map(|(a, b)| ((a - b) as f64).powi(2)).sum::<f64>() / v.len() as f64;
    let (before, after) = (mse(&noisy), mse(&denoised));
    eprintln!("denoising at sigma {sigma}: mean squared error {before:.4} -> {after:.4}");
    assert!(after < 0.5 * before, "denoising must remove most of the noise: {before} -> {after}");
}
