//! The page's views of the consistency property: a trained consistency model maps a digit's
//! whole noise strip back to that digit and an untrained one does not; multistep sampling
//! traced step by step ends exactly where sampling does; the schedule view follows the recipe.

mod common;

use common::*;
use consistency::backend::prelude::*;
use consistency::checkpoint::Checkpoint;
use consistency::data::mnist::{Mnist, Split};
use consistency::eval::classifier::to_model_range;
use consistency::eval::Evaluator;
use consistency::recipe::TrainConfig;
use consistency::sample;
use consistency::views;

/// How many of the strip's outputs the MNIST classifier reads as the digit's own label, and
/// their mean squared distance to the digit itself.
fn agreement(saved: &Checkpoint, x0: &[f32], label: u8, times: &[f64]) -> (usize, f64) {
    let be = cpu();
    let model = saved.model();
    let params = be.upload(saved.ema(), &[saved.ema().len()]);
    let (shown, mapped) = views::trajectory(&be, &model, &params, x0, times, 3);
    assert_eq!(shown.shape, [times.len(), 1, 28, 28]);
    let shown = read(&be, &shown);
    assert!(shown.iter().all(|v| v.abs() < 6.0), "noised digits are scaled for display");
    let mapped: Vec<f32> = read(&be, &mapped).iter().map(|v| v.clamp(-1.0, 1.0)).collect();
    let distance =
        mapped.chunks(784).flat_map(|m| m.iter().zip(x0).map(|(a, b)| ((a - b) as f64).powi(2))).sum::<f64>()
            / mapped.len() as f64;
    let evaluator = Evaluator::shipped(&be).unwrap();
    let classes = pollster::block_on(evaluator.classify_host(&be, &mapped)).unwrap().classes;
    (classes.iter().filter(|&&c| c == label).count(), distance)
}

#[test]
fn a_trained_model_maps_the_whole_strip_to_one_digit_an_untrained_one_does_not() {
    let test = Mnist::load_split("data/mnist", Split::Test).expect("MNIST in data/mnist (scripts/fetch-mnist)");
    let shipped = Checkpoint::from_bytes(&std::fs::read("assets/consistency-small.safetensors").unwrap()).unwrap();
    let untrained = Checkpoint::start(shipped.widths, 0, TrainConfig::improved(100));
    // The strip up to t = 10: beyond it little of the digit is left in x_t, and even a perfect
    // model may draw another digit from it.
    let times: Vec<f64> = views::strip_times(12).into_iter().filter(|&t| t <= 10.0).collect();
    assert!(times.len() >= 8, "{times:?}");
    let (mut trained, mut random) = ((0, 0.0), (0, 0.0));
    for i in 0..4 {
        let x0 = to_model_range(&test.images[i * 784..(i + 1) * 784]);
        let (a, d) = agreement(&shipped, &x0, test.labels[i], &times);
        trained = (trained.0 + a, trained.1 + d / 4.0);
        let (a, d) = agreement(&untrained, &x0, test.labels[i], &times);
        random = (random.0 + a, random.1 + d / 4.0);
    }
    let total = 4 * times.len();
    println!(
        "strip outputs read as the digit: trained {}/{total} (mean squared distance to it {:.3}), untrained {}/{total} ({:.3})",
        trained.0, trained.1, random.0, random.1
    );
    assert!(trained.0 as f64 >= 0.8 * total as f64, "trained: {} of {total}", trained.0);
    // Untrained, f(x_t, t) = c_skip x_t + c_out F is the noisy input shrunk towards 0: the
    // classifier (which normalizes its input) may still read it, but it is no digit.
    assert!(trained.1 < 0.1 && random.1 > 3.0 * trained.1, "distances: trained {}, untrained {}", trained.1, random.1);
}

#[test]
fn the_multistep_trace_ends_where_sampling_does() {
    let be = cpu();
    let saved = Checkpoint::from_bytes(&std::fs::read("assets/consistency-small.safetensors").unwrap()).unwrap();
    let (model, params) = (saved.model(), be.upload(saved.ema(), &[saved.ema().len()]));
    let points = [5.0, 0.8];
    let frames = views::multistep_trace(&be, &model, &params, 3, &points, 9, None).unwrap();
    let captions: Vec<&str> = frames.iter().map(|(c, _)| c.as_str()).collect();
    assert_eq!(
        captions,
        ["noise, t = 80", "f(x, 80)", "re-noised to t = 5", "f(x, 5)", "re-noised to t = 0.8", "f(x, 0.8)"]
    );
    let direct = sample::sample(&be, &model, &params, 3, &points, 9).unwrap();
    assert_eq!(read(&be, &frames[5].1), read(&be, &direct), "the last frame is the sample, bit for bit");
    let one_step = sample::sample(&be, &model, &params, 3, &[], 9).unwrap();
    assert_eq!(read(&be, &frames[1].1), read(&be, &one_step), "the second frame is the one-step sample");
    assert!(views::multistep_trace(&be, &model, &params, 3, &[0.8, 5.0], 9, None).is_err(), "points must decrease");
}

#[test]
fn the_schedule_view_follows_the_recipe() {
    let config = TrainConfig::original(1000);
    let view = views::schedule(&config, 500, 11);
    assert_eq!(view.steps.len(), 11);
    assert_eq!((view.steps[0], view.steps[10]), (0, 999));
    assert_eq!(view.grid.len(), config.discretization(500), "the grid has N(k) points");
    assert!(view.grid.windows(2).all(|w| w[0] < w[1]));
    assert!(view.discretization.windows(2).all(|w| w[0] <= w[1]), "N(k) grows");
    assert!(view.mu.windows(2).all(|w| w[0] <= w[1]), "mu(k) grows with N(k)");
    // Consistency tuning has no grid.
    assert!(views::schedule(&TrainConfig::tuning(1000), 10, 5).grid.is_empty());
}
