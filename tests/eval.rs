//! The MNIST-FID machinery: the shipped classifier on the real test set, its forward and
//! backward (GPU = CPU, finite differences), its weights file (round trip, damaged files), the
//! Frechet distance (closed forms, symmetry) and the scale helpers.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use consistency::backend::prelude::*;
use consistency::data::{Mnist, Split};
use consistency::eval::classifier::{self, to_model_range};
use consistency::eval::frechet::{frechet_distance, symmetric_eigen, FeatureStats};
use consistency::eval::{self, Evaluator, WeightsInfo};
use consistency::image::{digit_shape, PIXELS, SIDE};
use consistency::nn::classifier::{weights, Architecture, Classifier, FEATURES};
use consistency::train::classifier::{TrainConfig, Trainer};
use safetensors::tensor::TensorView;
use safetensors::Dtype;

fn mnist_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("data/mnist")
}

/// One split of the real MNIST files. Fails (on purpose) when `data/mnist/` is missing, so a
/// run without the data never looks like a run that checked it.
fn real_mnist(split: Split) -> Mnist {
    let dir = mnist_dir();
    assert!(dir.is_dir(), "{} is missing: run scripts/fetch-mnist", dir.display());
    Mnist::load_split(&dir, split).unwrap()
}

#[test]
fn shipped_classifier_reaches_99_percent_on_the_test_set() {
    let be = cpu();
    let test = real_mnist(Split::Test);
    assert_eq!(test.count, 10_000);
    let ev = Evaluator::shipped(&be).unwrap();
    assert_eq!(ev.info.architecture, Architecture::FID.name);
    let accuracy = pollster::block_on(classifier::accuracy(&be, &ev.net, &ev.params, &test)).unwrap();
    assert!(accuracy >= 0.99, "test accuracy {accuracy} below 99%");
    // The metadata records what training measured (on the CPU too; summation order may move a
    // borderline digit or two).
    assert!((accuracy - ev.info.test_accuracy).abs() <= 3e-4, "{accuracy} vs recorded {}", ev.info.test_accuracy);
    // The whole file is small.
    assert!(weights::SHIPPED.len() < 500_000, "shipped weights are {} bytes", weights::SHIPPED.len());
}

/// The shipped classifier says "no digit" (`cm calibrate-classifier`): it reads noise and blobs
/// as no digit with p >= 0.9, and still reads real test digits as digits.
#[test]
fn shipped_classifier_reads_noise_and_blobs_as_no_digit_and_digits_as_digits() {
    use consistency::eval::calibrate::blob_images;
    let be = cpu();
    let ev = Evaluator::shipped(&be).unwrap();
    let legible =
        |images: Vec<f32>| eval::legible_share(&pollster::block_on(ev.classify_host(&be, &images)).unwrap().confidence);
    let noise = legible(eval::noise_images(500, 31));
    let blobs = legible(blob_images(500, 32));
    let test = real_mnist(Split::Test);
    let digits = legible(to_model_range(&test.images[..2000 * PIXELS]));
    assert!(noise < 0.05 && blobs < 0.1, "noise {noise}, blobs {blobs} read as digits");
    assert!(digits > 0.94, "test digits {digits} read as digits");
}

/// Initial weights with every GroupNorm gain, shift and bias jittered (the initial zero biases
/// and unit gains would leave those gradients untested), and 3 images of uniform noise.
fn gradient_inputs(net: &Classifier) -> (Vec<f32>, Vec<f32>) {
    let mut params = net.layout.init(5);
    let jitter = random_vec(params.len(), 6);
    for p in &net.layout.params {
        if !p.name.ends_with(".weight") {
            for i in p.offset..p.offset + p.len() {
                params[i] += 0.2 * jitter[i];
            }
        }
    }
    let x = random_vec(3 * PIXELS, 7);
    (params, x)
}

struct Run {
    features: Vec<f32>,
    logits: Vec<f32>,
    loss: Vec<f32>,
    grads: Vec<f32>,
}

/// Forward, mean cross entropy against `labels`, and backward on any backend.
fn run<B: Backend>(be: &B, net: &Classifier, params: &[f32], x: &[f32], labels: &[f32]) -> Run {
    let n = labels.len();
    let p = be.upload(params, &[params.len()]);
    let g = be.zeros(&[params.len()]);
    let xt = be.upload(x, &digit_shape(n));
    let lt = be.upload(labels, &[n]);
    let out = net.forward(be, &p, &xt);
    let per_sample = be.empty(&[n]);
    be.softmax_cross_entropy(&out.logits, &lt, &per_sample);
    let dlogits = be.empty(&out.logits.shape);
    be.softmax_cross_entropy_backward(&out.logits, &lt, &dlogits);
    net.backward(be, &p, &g, &out.cache, &dlogits);
    Run {
        features: read(be, &out.features),
        logits: read(be, &out.logits),
        loss: read(be, &per_sample),
        grads: read(be, &g),
    }
}

#[test]
fn classifier_forward_and_backward_on_gpu_equal_cpu() {
    let net = Classifier::fid();
    let labels = [3.0, 7.0, 0.0];
    // The shipped weights on real-looking digits, and jittered initial weights on noise.
    let shipped = weights::load(&net, weights::SHIPPED, "shipped").unwrap().0;
    let digits: Vec<f32> = (0..3 * PIXELS)
        .map(|i| {
            let (y, x) = ((i % PIXELS) / SIDE, i % SIDE);
            // A ring, a bar and a blob: shapes with ink where digits have it.
            let (dy, dx) = (y as f32 - 14.0, x as f32 - 14.0);
            let ink = match i / PIXELS {
                0 => ((dy * dy + dx * dx).sqrt() - 8.0).abs() < 2.0,
                1 => dx.abs() < 2.0 && dy.abs() < 10.0,
                _ => dy * dy + 2.0 * dx * dx < 40.0,
            };
            if ink {
                1.0
            } else {
                -1.0
            }
        })
        .collect();
    let (jittered, noise) = gradient_inputs(&net);
    for (what, params, x) in [("shipped", &shipped, &digits), ("jittered", &jittered, &noise)] {
        let on_gpu = run(&gpu(), &net, params, x, &labels);
        let on_cpu = run(&cpu(), &net, params, x, &labels);
        assert_close(&format!("{what} features"), &on_gpu.features, &on_cpu.features, 1e-3, 1e-4);
        assert_close(&format!("{what} logits"), &on_gpu.logits, &on_cpu.logits, 1e-3, 1e-3);
        assert_close(&format!("{what} loss"), &on_gpu.loss, &on_cpu.loss, 1e-3, 1e-4);
        for p in &net.layout.params {
            let range = p.offset..p.offset + p.len();
            let scale = on_cpu.grads[range.clone()].iter().fold(0.0f32, |m, v| m.max(v.abs()));
            assert!(scale > 0.0, "{what} {}: gradient is all zero", p.name);
            let name = format!("{what} {}", p.name);
            assert_close(&name, &on_gpu.grads[range.clone()], &on_cpu.grads[range], 1e-3, 2e-3 * scale);
        }
    }
}

/// Along a direction v in one parameter tensor, the central difference of the mean cross
/// entropy must equal `grad . v`: two directions per tensor (the gradient itself, so a wrong
/// gradient g against the true t fails unless t.g = |g|^2, and a random one).
#[test]
fn classifier_backward_matches_finite_differences() {
    let be = cpu();
    let net = Classifier::fid();
    let (params, x) = gradient_inputs(&net);
    let labels = [1.0, 4.0, 9.0];
    let grads = run(&be, &net, &params, &x, &labels).grads;
    let loss = |p: &[f32]| -> f64 {
        run(&be, &net, p, &x, &labels).loss.iter().map(|&l| l as f64).sum::<f64>() / labels.len() as f64
    };
    // A loss of about 2.3 in f32 has rounding near 2e-7, over 2h = 2e-2: 1e-5 of noise.
    check_directional_gradients(&net.layout, &params, &grads, 1e-2, 1e-4, loss);
}

#[test]
fn training_lowers_the_loss() {
    // 80 steps on 256 real training digits: the loss must fall well below ln 10 (chance).
    let be = cpu();
    let mut data = real_mnist(Split::Train);
    data.images.truncate(256 * PIXELS);
    data.labels.truncate(256);
    data.count = 256;
    let steps = 80;
    let config = TrainConfig { steps, batch: 32, lr: 3e-3, seed: 1 };
    let mut t = Trainer::new(&be, Classifier::fid(), config, &data);
    let losses: Vec<f32> = (0..steps).map(|_| read(&be, &t.step(&be))[0]).collect();
    let first = losses[0];
    // The mean of the last ten batches: single batches of 32 are noisy.
    let last = losses[steps as usize - 10..].iter().sum::<f32>() / 10.0;
    assert!((first - 10f32.ln()).abs() < 0.3, "initial loss {first}, chance is ln 10");
    assert!(last < 0.4 * first, "loss went from {first} to {last} in {steps} steps: {losses:?}");
}

// ---- weights files --------------------------------------------------------------------------

fn info() -> WeightsInfo {
    WeightsInfo { architecture: Architecture::FID.name.to_string(), test_accuracy: 0.5, seed: 3, steps: 7 }
}

#[test]
fn weights_round_trip() {
    let net = Classifier::fid();
    let params = net.layout.init(11);
    let bytes = weights::save(&net, &params, &info()).unwrap();
    let (loaded, loaded_info) = weights::load(&net, &bytes, "round trip").unwrap();
    assert_eq!(loaded, params);
    assert_eq!(loaded_info, info());
    // The shipped file is a valid one of this architecture.
    let (_, shipped) = weights::load(&net, weights::SHIPPED, "shipped").unwrap();
    assert!(shipped.test_accuracy >= 0.99, "{shipped:?}");
}

/// A safetensors file with the given tensors (name, dtype, shape, values as f32) and metadata.
fn handmade(tensors: &[(String, Dtype, Vec<usize>, Vec<u8>)], meta: &[(&str, &str)]) -> Vec<u8> {
    let views: Vec<(String, TensorView)> =
        tensors.iter().map(|(n, d, s, b)| (n.clone(), TensorView::new(*d, s.clone(), b).unwrap())).collect();
    safetensors::serialize(views, Some(meta.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())).unwrap()
}

#[test]
fn damaged_weights_files_give_named_errors() {
    let net = Classifier::fid();
    let params = net.layout.init(1);
    let good: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = net
        .layout
        .params
        .iter()
        .map(|p| {
            let bytes = params[p.offset..p.offset + p.len()].iter().flat_map(|v| v.to_le_bytes()).collect();
            (p.name.clone(), Dtype::F32, p.shape.clone(), bytes)
        })
        .collect();
    let meta = [("architecture", Architecture::FID.name), ("test_accuracy", "0.99"), ("seed", "0"), ("steps", "10")];
    assert!(weights::load(&net, &handmade(&good, &meta), "good").is_ok());

    let mut wrong_shape = good.clone();
    wrong_shape[0].2 = vec![16, 1, 9];
    let mut wrong_dtype = good.clone();
    wrong_dtype[2] = (good[2].0.clone(), Dtype::I32, good[2].2.clone(), good[2].3.clone());
    let missing = good[1..].to_vec();
    let mut extra = good.clone();
    extra.push(("head.weight".into(), Dtype::F32, vec![1], vec![0; 4]));
    let mut nan = good.clone();
    nan[1].3[..4].copy_from_slice(&f32::NAN.to_le_bytes());
    let mut other_arch = meta;
    other_arch[0].1 = "resnet-50";
    let full = handmade(&good, &meta);
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("empty", vec![], "not a valid safetensors file"),
        ("truncated", full[..full.len() - 100].to_vec(), "not a valid safetensors file"),
        ("garbage", vec![0xff; 64], "not a valid safetensors file"),
        ("wrong shape", handmade(&wrong_shape, &meta), "'conv1.weight' has shape [16, 1, 9], expected [16, 1, 3, 3]"),
        ("wrong dtype", handmade(&wrong_dtype, &meta), "'norm1.gamma' has dtype I32, expected F32"),
        ("missing", handmade(&missing, &meta), "tensor 'conv1.weight' is missing"),
        ("extra", handmade(&extra, &meta), "unexpected tensor 'head.weight'"),
        ("non-finite", handmade(&nan, &meta), "'conv1.bias' holds a non-finite value at 0"),
        ("other architecture", handmade(&good, &other_arch), "weights of architecture 'resnet-50'"),
        ("no metadata", handmade(&good, &[]), "metadata has no 'architecture'"),
        (
            "bad number",
            handmade(&good, &[meta[0], ("test_accuracy", "high"), meta[2], meta[3]]),
            "'test_accuracy' is 'high'",
        ),
    ];
    for (what, bytes, expected) in cases {
        match weights::load(&net, &bytes, "weights.safetensors") {
            Ok(_) => panic!("{what}: loaded"),
            Err(e) => {
                let message = e.to_string();
                assert!(message.starts_with("weights.safetensors: "), "{what}: {message}");
                assert!(message.contains(expected), "{what}: '{message}' does not say '{expected}'");
            }
        }
    }
    // Through the evaluator too.
    assert!(Evaluator::from_safetensors(&cpu(), &[1, 2, 3], "x").is_err());
}

// ---- Frechet distance -----------------------------------------------------------------------

/// Stats with the given mean and covariance (no samples behind them).
fn stats(mean: Vec<f64>, cov: Vec<f64>) -> FeatureStats {
    FeatureStats { dim: mean.len(), count: 2, mean, cov }
}

/// A random orthogonal d x d matrix: Gram-Schmidt on random vectors.
fn orthogonal(d: usize, seed: u64) -> Vec<f64> {
    let r = random_vec(d * d, seed);
    let mut q = vec![0.0f64; d * d];
    for i in 0..d {
        let mut v: Vec<f64> = (0..d).map(|k| r[i * d + k] as f64).collect();
        for j in 0..i {
            let dot: f64 = (0..d).map(|k| v[k] * q[j * d + k]).sum();
            (0..d).for_each(|k| v[k] -= dot * q[j * d + k]);
        }
        let n = v.iter().map(|a| a * a).sum::<f64>().sqrt();
        (0..d).for_each(|k| q[i * d + k] = v[k] / n);
    }
    q
}

/// `Q diag(values) Q^T` (rows of Q orthonormal).
fn rotated_diag(q: &[f64], values: &[f64]) -> Vec<f64> {
    let d = values.len();
    let mut m = vec![0.0; d * d];
    for i in 0..d {
        for j in 0..d {
            m[i * d + j] = (0..d).map(|k| q[k * d + i] * values[k] * q[k * d + j]).sum();
        }
    }
    m
}

#[test]
fn frechet_distance_of_gaussians_has_the_closed_form() {
    // Diagonal covariances commute: d^2 = |mu1 - mu2|^2 + sum_i (s1_i - s2_i)^2 with s the
    // standard deviations. Rotating both covariances by one orthogonal Q changes nothing.
    let d = 12;
    let mu1: Vec<f64> = (0..d).map(|i| i as f64 * 0.1).collect();
    let mu2: Vec<f64> = (0..d).map(|i| 1.0 - i as f64 * 0.05).collect();
    let var1: Vec<f64> = (0..d).map(|i| 0.5 + i as f64).collect();
    let var2: Vec<f64> = (0..d).map(|i| 4.0 / (1.0 + i as f64)).collect();
    let expected: f64 = mu1.iter().zip(&mu2).map(|(a, b)| (a - b) * (a - b)).sum::<f64>()
        + var1.iter().zip(&var2).map(|(a, b)| (a.sqrt() - b.sqrt()).powi(2)).sum::<f64>();
    let diag =
        |v: &[f64]| rotated_diag(&(0..d * d).map(|i| if i % (d + 1) == 0 { 1.0 } else { 0.0 }).collect::<Vec<_>>(), v);
    let a = stats(mu1.clone(), diag(&var1));
    let b = stats(mu2.clone(), diag(&var2));
    let got = frechet_distance(&a, &b).unwrap();
    assert!((got - expected).abs() <= 1e-10 * expected, "{got} vs {expected}");
    let q = orthogonal(d, 4);
    let a = stats(mu1, rotated_diag(&q, &var1));
    let b = stats(mu2, rotated_diag(&q, &var2));
    let got = frechet_distance(&a, &b).unwrap();
    assert!((got - expected).abs() <= 1e-9 * expected, "rotated: {got} vs {expected}");
    // One dimension by hand: means 1 and 4, variances 4 and 1: 9 + (2 - 1)^2 = 10.
    let got = frechet_distance(&stats(vec![1.0], vec![4.0]), &stats(vec![4.0], vec![1.0])).unwrap();
    assert!((got - 10.0).abs() < 1e-12, "{got}");
}

#[test]
fn frechet_distance_is_zero_for_a_set_with_itself_and_symmetric() {
    let d = 128;
    // Correlated features (a random linear map of uniforms), like a network's.
    let mix = random_vec(d * d, 30);
    let features = |n: usize, seed: u64, shift: f32| -> Vec<f32> {
        let u = random_vec(n * d, seed);
        (0..n * d)
            .map(|i| {
                let (s, j) = (i / d, i % d);
                (0..d).map(|k| mix[j * d + k] * u[s * d + k]).sum::<f32>() * 0.2 + shift
            })
            .collect()
    };
    let a = FeatureStats::new(&features(1000, 31, 0.0), d).unwrap();
    let b = FeatureStats::new(&features(1500, 32, 0.05), d).unwrap();
    let self_distance = frechet_distance(&a, &a).unwrap();
    let ab = frechet_distance(&a, &b).unwrap();
    let ba = frechet_distance(&b, &a).unwrap();
    let trace: f64 = (0..d).map(|i| a.cov[i * d + i]).sum();
    assert!(self_distance <= 1e-9 * trace, "d(a, a) = {self_distance} (trace {trace})");
    assert!(ab > 1e-3 * trace, "different sets at distance {ab}");
    assert!((ab - ba).abs() <= 1e-9 * ab, "not symmetric: {ab} vs {ba}");
    assert!(frechet_distance(&a, &stats(vec![0.0; 3], vec![0.0; 9])).is_err(), "dimensions differ");
}

#[test]
fn feature_stats_and_eigen_solver() {
    // Mean and unbiased covariance of three 2-D points by hand.
    let s = FeatureStats::new(&[1.0, 2.0, 3.0, 6.0, 5.0, 4.0], 2).unwrap();
    assert_eq!(s.mean, vec![3.0, 4.0]);
    assert_eq!(s.cov, vec![4.0, 2.0, 2.0, 4.0]);
    assert!(FeatureStats::new(&[1.0, 2.0], 2).is_err(), "one vector has no covariance");
    assert!(FeatureStats::new(&[1.0, f32::NAN, 0.0, 0.0], 2).is_err());
    // A = Q diag(l) Q^T comes back as its eigenvalues, and V diag(l) V^T rebuilds A.
    let d = 20;
    let l: Vec<f64> = (0..d).map(|i| (i as f64 - 5.0) * 0.7).collect();
    let a = rotated_diag(&orthogonal(d, 9), &l);
    let (values, vectors) = symmetric_eigen(&a, d);
    let mut sorted = values.clone();
    sorted.sort_by(f64::total_cmp);
    for (x, y) in sorted.iter().zip(&l) {
        assert!((x - y).abs() < 1e-10, "eigenvalue {x} vs {y}");
    }
    for i in 0..d {
        for j in 0..d {
            let r: f64 = (0..d).map(|k| vectors[i * d + k] * values[k] * vectors[j * d + k]).sum();
            assert!((r - a[i * d + j]).abs() < 1e-10, "reconstruction ({i}, {j})");
        }
    }
}

// ---- the scale helpers ----------------------------------------------------------------------

#[test]
fn blur_keeps_background_and_ink_and_noise_is_clamped() {
    let test = real_mnist(Split::Test);
    let images = &test.images[..20 * PIXELS];
    let blurred = eval::gaussian_blur(images, 1.0);
    let sharp = to_model_range(images);
    // The kernel sums to one, so ink is kept, except for the tails that zero padding cuts off
    // where a digit comes within 3 pixels of the border (a few tenths of a percent).
    let ink = |v: &[f32]| v.iter().map(|&p| (p as f64 + 1.0) / 2.0).sum::<f64>();
    for k in 0..20 {
        let (b, s) = (&blurred[k * PIXELS..][..PIXELS], &sharp[k * PIXELS..][..PIXELS]);
        assert!((ink(b) - ink(s)).abs() < 1e-2 * ink(s), "digit {k}: ink {} vs {}", ink(b), ink(s));
        assert!(ink(b) <= ink(s) + 1e-9, "digit {k}: blur made ink");
        assert_eq!(b[0], -1.0, "digit {k}: the corner is background");
        assert!(b.iter().all(|&p| (-1.0..=1.0).contains(&p)));
        // Blurring lowers the peak and spreads ink: fewer pixels near full ink.
        let dark = |v: &[f32]| v.iter().filter(|&&p| p > 0.9).count();
        assert!(dark(b) < dark(s), "digit {k}: blur did not soften");
    }
    let noise = eval::noise_images(4, 1);
    assert_eq!(noise.len(), 4 * PIXELS);
    assert!(noise.iter().all(|&p| (-1.0..=1.0).contains(&p)));
    let clipped = noise.iter().filter(|&&p| p.abs() == 1.0).count() as f64 / noise.len() as f64;
    assert!((clipped - 0.317).abs() < 0.04, "fraction clamped {clipped}, P(|z| > 1) = 0.317");
}

#[test]
fn class_entropy_bounds() {
    assert!((eval::class_entropy(&[5; 10]) - 10f64.ln()).abs() < 1e-12);
    assert_eq!(eval::class_entropy(&[0, 0, 7, 0, 0, 0, 0, 0, 0, 0]), 0.0);
    assert!((eval::class_entropy(&[1, 1, 0, 0, 0, 0, 0, 0, 0, 0]) - 2f64.ln()).abs() < 1e-12);
    assert_eq!(eval::class_histogram(&[1, 1, 9]), [0, 2, 0, 0, 0, 0, 0, 0, 0, 1]);
}

#[test]
fn legibility_counts_confident_readings() {
    // Equal logits: every digit at 0.1; one logit 5 above nine equal ones: e^5 / (e^5 + 9).
    let mut logits = vec![0.0f32; 20];
    logits[13] = 5.0;
    let top = classifier::top_probability_rows(&logits);
    assert!((top[0] - 0.1).abs() < 1e-6, "{top:?}");
    let expected = 5f32.exp() / (5f32.exp() + 9.0);
    assert!((top[1] - expected).abs() < 1e-6, "{top:?}");
    // Shifting every logit of a row changes nothing (the softmax is computed stably).
    let shifted: Vec<f32> = logits.iter().map(|z| z + 80.0).collect();
    assert_eq!(classifier::top_probability_rows(&shifted), top);
    assert_eq!(eval::legible_share(&[0.95, 0.5, 0.9, 0.89]), 0.5);
    assert_eq!(eval::legible_share(&[]), 0.0);
}

#[test]
fn digit_shares_flag_a_missing_or_dominant_digit() {
    let classified = eval::Classified {
        features: vec![0.0; 0],
        classes: (0..100).map(|i| if i < 25 { 1 } else { (i % 10) as u8 }).collect(),
        confidence: vec![1.0; 100],
    };
    let histogram = eval::class_histogram(&classified.classes);
    let quality = eval::Quality { count: 100, fid: 0.0, class_histogram: histogram, class_entropy: 0.0, legible: 1.0 };
    let shares = quality.shares();
    assert!((shares.iter().sum::<f64>() - 100.0).abs() < 1e-9);
    // Digit 1 holds 25 + 7 of 100; the others 7 or 8 each (inside 6-14%).
    assert_eq!(shares[1], 32.0);
    assert_eq!(quality.unbalanced_digits(), vec![1]);
    assert!(quality.shares_text().contains("1:32.0!") && quality.shares_text().contains("0:7.0 "));
}

/// The evaluator on a small subset, on the GPU and the CPU: the same classes, FID near each other,
/// and a set compared with itself at FID ~0.
#[test]
fn quality_of_test_digits_against_themselves() {
    let mut test = real_mnist(Split::Test);
    test.count = 600;
    test.images.truncate(600 * PIXELS);
    test.labels.truncate(600);
    let be = cpu();
    let ev = Evaluator::shipped(&be).unwrap();
    let reference = pollster::block_on(ev.reference(&be, &test)).unwrap();
    let x = be.upload(&to_model_range(&test.images), &digit_shape(600));
    let q = pollster::block_on(ev.quality(&be, &x, &reference)).unwrap();
    // Identical features; only the eigen solver's rounding remains (square roots of eigenvalues
    // near zero amplify it).
    let trace: f64 = (0..FEATURES).map(|i| reference.cov[i * FEATURES + i]).sum();
    assert!(q.fid < 1e-6 * trace, "FID of a set with itself: {} (trace {trace})", q.fid);
    assert_eq!(q.count, 600);
    // The predicted histogram is the labels' histogram up to the few misclassified digits.
    let labels = test.label_histogram();
    let off: usize = q.class_histogram.iter().zip(&labels).map(|(a, b)| a.abs_diff(*b)).sum();
    assert!(off <= 12, "{:?} vs labels {labels:?}", q.class_histogram);
    assert!(q.class_entropy > 2.2 && q.class_entropy <= 10f64.ln() + 1e-12);
    // Real digits are read as digits: the classifier is sure of nearly all of them.
    assert!(q.legible > 0.95, "legible share of real test digits {}", q.legible);

    let g = gpu();
    let ev_gpu = Evaluator::shipped(&g).unwrap();
    let xg = g.upload(&to_model_range(&test.images[..100 * PIXELS]), &digit_shape(100));
    let on_gpu = pollster::block_on(ev_gpu.classify(&g, &xg)).unwrap();
    let on_cpu = pollster::block_on(ev.classify_digits(&be, &test, 100)).unwrap();
    assert_eq!(on_gpu.features.len(), 100 * FEATURES);
    assert_close("features", &on_gpu.features, &on_cpu.features, 1e-3, 1e-4);
    assert_eq!(on_gpu.classes, on_cpu.classes);
}

/// Prints the FID scale of the shipped classifier (about a minute on 2 CPU cores):
/// `cargo test --release --test eval -- --ignored --nocapture print_scale`.
#[test]
#[ignore]
fn print_scale() {
    let be = cpu();
    let (train, test) = (real_mnist(Split::Train), real_mnist(Split::Test));
    let ev = Evaluator::shipped(&be).unwrap();
    let start = std::time::Instant::now();
    let reference = pollster::block_on(ev.reference(&be, &test)).unwrap();
    let scale = pollster::block_on(ev.scale(&be, &train, &test, &reference, 0)).unwrap();
    println!("{scale}");
    println!("({:.1} s on {})", start.elapsed().as_secs_f64(), be.name());
}
