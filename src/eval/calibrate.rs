//! Teaching the classifier to say "no digit": its last layer retrained so that images that are not
//! digits get a flat softmax instead of a confident guess.
//!
//! A classifier trained on digits alone has never seen anything else, and reads whatever it is
//! shown as some digit: the first shipped weights read half of pure noise as an 8 with p >= 0.9,
//! and the blobs of an early consistency model as 3s and 8s. Legibility (the share read with
//! p >= 0.9) then rewards blobs. Outlier exposure fixes this where it is cheapest: the features
//! stay as they are (so the MNIST-FID, which uses only the 128 penultimate features, does not
//! move), and the last linear layer (128 -> 10) is retrained on the features of
//!
//! - MNIST training digits, with their label as the target;
//! - noise images, and blobs (noise blurred by 1-2 px and thresholded to MNIST's ink coverage),
//!   with the uniform distribution as the target: no digit;
//! - blends of two digits of different classes (their mean), with half of each label as the
//!   target: an image that is two digits at once is neither.
//!
//! The layer is a softmax regression on fixed features, so it is trained here on the host by
//! full-batch Adam on the cross entropy with these soft targets, starting from the trained
//! weights. `cm calibrate-classifier` runs it and reports, on held-out images, what each kind
//! is read as.

use super::classifier::{argmax_rows, to_model_range, top_probability_rows};
use super::{gaussian_blur, legible_share, noise_images, Evaluator};
use crate::backend::Backend;
use crate::backend::RandomKey;
use crate::data::mnist::{Mnist, CLASSES};
use crate::image::PIXELS;
use crate::nn::classifier::Classifier;
use crate::random::index_below;
use crate::Result;

/// How many images of each kind the head is fitted on, and how it is fitted.
#[derive(Clone, Debug)]
pub struct CalibrationConfig {
    pub digits: usize,
    pub noise: usize,
    pub blobs: usize,
    pub blends: usize,
    /// Full-batch Adam iterations and their learning rate.
    pub iterations: usize,
    pub lr: f64,
    /// The weights of an outlier's loss against a digit's tried, strongest first: the first
    /// that keeps `keep_legible` of the held-out test digits legible is taken.
    pub outlier_weights: Vec<f64>,
    pub keep_legible: f64,
    pub seed: u64,
}

impl Default for CalibrationConfig {
    fn default() -> Self {
        CalibrationConfig {
            digits: 20_000,
            noise: 4_000,
            blobs: 8_000,
            blends: 4_000,
            iterations: 200,
            lr: 0.01,
            outlier_weights: vec![0.5, 0.25, 0.12, 0.06, 0.03],
            keep_legible: 0.96,
            seed: 7,
        }
    }
}

/// Images of one kind with the target distribution of each.
struct Labelled {
    images: Vec<f32>,
    targets: Vec<[f32; CLASSES]>,
}

const UNIFORM: [f32; CLASSES] = [1.0 / CLASSES as f32; CLASSES];

fn one_hot(label: u8) -> [f32; CLASSES] {
    let mut t = [0.0; CLASSES];
    t[label as usize] = 1.0;
    t
}

/// Noise blurred by a Gaussian of 1, 1.5 or 2 px and thresholded so that about a fifth of the
/// pixels are ink, as in MNIST: smooth white shapes on black, the look of an undertrained
/// model's samples.
pub fn blob_images(count: usize, seed: u64) -> Vec<f32> {
    let noise = noise_images(count, seed);
    let gray: Vec<u8> = noise.iter().map(|v| ((v + 1.0) * 127.5).round() as u8).collect();
    let mut out = Vec::with_capacity(count * PIXELS);
    for (i, image) in gray.chunks_exact(PIXELS).enumerate() {
        let blurred = gaussian_blur(image, [1.0, 1.5, 2.0][i % 3]);
        let mean = blurred.iter().sum::<f32>() / PIXELS as f32;
        let spread = (blurred.iter().map(|v| (v - mean).powi(2)).sum::<f32>() / PIXELS as f32).sqrt().max(1e-6);
        // z > 0.85 holds for about a fifth of a Gaussian's mass; a soft edge of 0.5 standard
        // deviations turns it into strokes with grey borders.
        out.extend(blurred.iter().map(|v| ((v - mean) / spread - 0.85).mul_add(4.0, 0.0).clamp(-1.0, 1.0)));
    }
    out
}

/// Means of two digits of different classes (digits drawn from `data` by `seed`), with half of
/// each label as the target.
fn blends(data: &Mnist, count: usize, seed: u64) -> Labelled {
    let key = RandomKey { seed, step: 0, stream: 0 };
    let mut draws = (0u32..).map(|i| index_below(key, i, data.count as u32) as usize);
    let mut images = Vec::with_capacity(count * PIXELS);
    let mut targets = Vec::with_capacity(count);
    while targets.len() < count {
        let (a, b) = (draws.next().expect("endless"), draws.next().expect("endless"));
        let (la, lb) = (data.labels[a], data.labels[b]);
        if la == lb {
            continue;
        }
        let (xa, xb) = (to_model_range(data.image(a)), to_model_range(data.image(b)));
        images.extend(xa.iter().zip(&xb).map(|(p, q)| 0.5 * (p + q)));
        let mut t = [0.0; CLASSES];
        t[la as usize] = 0.5;
        t[lb as usize] = 0.5;
        targets.push(t);
    }
    Labelled { images, targets }
}

/// Digits (their labels as targets) and the three kinds of outliers, drawn with `seed`: the
/// exposure set, or with another seed and the test digits, the held-out set.
struct Kinds {
    digits: Labelled,
    outliers: [Labelled; 3],
}

fn kinds(digits: &Mnist, data: &Mnist, count: usize, outliers: [usize; 3], seed: u64) -> Kinds {
    let count = count.min(digits.count);
    let [noise, blobs, mixed] = outliers;
    Kinds {
        digits: Labelled {
            images: to_model_range(&digits.images[..count * PIXELS]),
            targets: digits.labels[..count].iter().map(|&l| one_hot(l)).collect(),
        },
        outliers: [
            Labelled { images: noise_images(noise, seed), targets: vec![UNIFORM; noise] },
            Labelled { images: blob_images(blobs, seed + 1), targets: vec![UNIFORM; blobs] },
            blends(data, mixed, seed + 2),
        ],
    }
}

/// The penultimate features of each kind, in the order digits, noise, blobs, blends.
async fn features<B: Backend>(be: &B, evaluator: &Evaluator<B>, kinds: &Kinds) -> Result<Vec<Vec<f32>>> {
    let mut out = Vec::new();
    for kind in std::iter::once(&kinds.digits).chain(&kinds.outliers) {
        out.push(evaluator.classify_host(be, &kind.images).await?.features);
    }
    Ok(out)
}

/// The head (the last linear layer) as plain host arrays: `weight[o][i]` and `bias[o]`.
#[derive(Clone)]
struct Head {
    weight: Vec<f64>,
    bias: Vec<f64>,
    inputs: usize,
}

impl Head {
    fn logits(&self, feature: &[f32]) -> [f64; CLASSES] {
        std::array::from_fn(|o| {
            let row = &self.weight[o * self.inputs..(o + 1) * self.inputs];
            self.bias[o] + row.iter().zip(feature).map(|(w, &f)| w * f as f64).sum::<f64>()
        })
    }

    /// The logits of every feature row, `[N, 10]` row-major, as the classifier's readouts take them.
    fn logit_rows(&self, features: &[f32]) -> Vec<f32> {
        features.chunks_exact(self.inputs).flat_map(|f| self.logits(f).map(|l| l as f32)).collect()
    }

    /// The share of `features` the head reads with p >= [`super::LEGIBLE_PROBABILITY`].
    fn legible(&self, features: &[f32]) -> f64 {
        legible_share(&top_probability_rows(&self.logit_rows(features)))
    }

    fn accuracy(&self, features: &[f32], labels: &[u8]) -> f64 {
        let predicted = argmax_rows(&self.logit_rows(features));
        let correct = predicted.iter().zip(labels).filter(|(p, y)| p == y).count();
        correct as f64 / labels.len().max(1) as f64
    }
}

fn softmax(logits: [f64; CLASSES]) -> [f64; CLASSES] {
    let max = logits.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let e = logits.map(|l| (l - max).exp());
    let total: f64 = e.iter().sum();
    e.map(|v| v / total)
}

/// Full-batch Adam on the weighted mean cross entropy between the head's softmax and the
/// targets; every sample of `features[k]` weighs `weights[k]`. Returns the final loss.
fn fit(
    head: &mut Head,
    features: &[Vec<f32>],
    targets: &[&[[f32; CLASSES]]],
    weights: &[f64],
    c: &CalibrationConfig,
) -> f64 {
    let params = head.weight.len() + head.bias.len();
    let total: f64 = targets.iter().zip(weights).map(|(t, w)| t.len() as f64 * w).sum();
    let (mut m, mut v) = (vec![0.0; params], vec![0.0; params]);
    let mut loss = f64::NAN;
    for t in 1..=c.iterations {
        let mut grad = vec![0.0; params];
        loss = 0.0;
        for ((kind, target), &w) in features.iter().zip(targets).zip(weights) {
            for (feature, target) in kind.chunks_exact(head.inputs).zip(target.iter()) {
                let p = softmax(head.logits(feature));
                for o in 0..CLASSES {
                    let d = w * (p[o] - target[o] as f64);
                    loss -= w * target[o] as f64 * p[o].max(1e-12).ln();
                    let row = &mut grad[o * head.inputs..(o + 1) * head.inputs];
                    row.iter_mut().zip(feature).for_each(|(g, &f)| *g += d * f as f64);
                    grad[head.weight.len() + o] += d;
                }
            }
        }
        loss /= total;
        let (b1, b2) = (0.9f64, 0.999f64);
        let values = head.weight.iter_mut().chain(head.bias.iter_mut());
        for (((value, g), m), v) in values.zip(&grad).zip(&mut m).zip(&mut v) {
            let g = g / total;
            *m = b1 * *m + (1.0 - b1) * g;
            *v = b2 * *v + (1.0 - b2) * g * g;
            let (mh, vh) = (*m / (1.0 - b1.powi(t as i32)), *v / (1.0 - b2.powi(t as i32)));
            *value -= c.lr * mh / (vh.sqrt() + 1e-8);
        }
    }
    loss
}

/// What a head reads in the held-out images of each kind: the share read with p >= 0.9 (and,
/// for the test digits, the accuracy).
#[derive(Clone, Debug, PartialEq)]
pub struct Readings {
    /// The weight of an outlier's loss the head was fitted with (0: the trained head).
    pub outlier_weight: f64,
    pub test_accuracy: f64,
    pub test_legible: f64,
    pub noise_legible: f64,
    pub blobs_legible: f64,
    pub blends_legible: f64,
}

impl std::fmt::Display for Readings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "outlier weight {:<5} test digits: accuracy {:.2}%, legible {:.1}%; legible noise {:.1}%, blobs {:.1}%, blends of two digits {:.1}%",
            self.outlier_weight,
            100.0 * self.test_accuracy,
            100.0 * self.test_legible,
            100.0 * self.noise_legible,
            100.0 * self.blobs_legible,
            100.0 * self.blends_legible
        )
    }
}

fn read(head: &Head, held_out: &[Vec<f32>], test: &Mnist, outlier_weight: f64) -> Readings {
    Readings {
        outlier_weight,
        test_accuracy: head.accuracy(&held_out[0], &test.labels),
        test_legible: head.legible(&held_out[0]),
        noise_legible: head.legible(&held_out[1]),
        blobs_legible: head.legible(&held_out[2]),
        blends_legible: head.legible(&held_out[3]),
    }
}

/// The classifier's flat weights with its last layer refitted by outlier exposure (see the
/// module's documentation): fitted for each outlier weight of `c`, strongest first, the first
/// head that keeps `c.keep_legible` of the test digits legible is taken (the weakest, if none
/// does). Every other weight is unchanged. Returns the weights and the readings of the trained
/// head followed by those of each fit, on held-out images.
pub async fn calibrate<B: Backend>(
    be: &B,
    evaluator: &Evaluator<B>,
    train: &Mnist,
    test: &Mnist,
    c: &CalibrationConfig,
) -> Result<(Vec<f32>, Vec<Readings>)> {
    let net: &Classifier = &evaluator.net;
    let mut flat = be.read(&evaluator.params).await?;
    let exposure = kinds(train, train, c.digits, [c.noise, c.blobs, c.blends], c.seed);
    let exposed = features(be, evaluator, &exposure).await?;
    let held = kinds(test, train, test.count, [2000; 3], c.seed + 1_000_003);
    let held_out = features(be, evaluator, &held).await?;

    let fc2 = net.head();
    let (w, b) = (&fc2.weight, &fc2.bias);
    let trained = Head {
        weight: flat[w.offset..w.offset + w.len()].iter().map(|&v| v as f64).collect(),
        bias: flat[b.offset..b.offset + b.len()].iter().map(|&v| v as f64).collect(),
        inputs: fc2.in_features,
    };
    let mut readings = vec![read(&trained, &held_out, test, 0.0)];
    let targets: Vec<&[[f32; CLASSES]]> =
        std::iter::once(&exposure.digits).chain(&exposure.outliers).map(|k| k.targets.as_slice()).collect();
    let mut chosen = None;
    for &weight in &c.outlier_weights {
        let mut head = trained.clone();
        fit(&mut head, &exposed, &targets, &[1.0, weight, weight, weight], c);
        let reading = read(&head, &held_out, test, weight);
        let keeps = reading.test_legible >= c.keep_legible;
        readings.push(reading);
        chosen = Some(head);
        if keeps {
            break;
        }
    }
    let head = chosen.unwrap_or(trained);
    for (dst, src) in flat[w.offset..w.offset + w.len()].iter_mut().zip(&head.weight) {
        *dst = *src as f32;
    }
    for (dst, src) in flat[b.offset..b.offset + b.len()].iter_mut().zip(&head.bias) {
        *dst = *src as f32;
    }
    Ok((flat, readings))
}
