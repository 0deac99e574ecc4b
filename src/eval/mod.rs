//! Sample quality on MNIST: the MNIST-FID and the class histogram.
//!
//! A small classifier trained with this engine ([`crate::nn::classifier`], trained by
//! [`crate::train::classifier`], read by [`classifier`], weights shipped in `assets/mnist-classifier.safetensors` and embedded, see
//! [`weights`]) maps each digit to 128
//! penultimate features and a predicted class. The MNIST-FID of a set of images is the Frechet
//! distance ([`frechet`]) between the Gaussians fitted to their features and to those of the
//! 10,000 MNIST test digits; the class histogram and its entropy (natural log; ln 10 = 2.303 for
//! perfectly balanced classes) show mode collapse, which the FID only hints at.
//!
//! Legibility is the question a person asks first: would someone read this sample as a digit?
//! [`Quality::legible`] is the share of images whose most likely digit has a softmax probability
//! of at least [`LEGIBLE_PROBABILITY`] (0.9) under the classifier (real test digits: about 99%),
//! and [`Quality::shares`] gives each digit's share of all images, flagged when it falls outside
//! [`BALANCED_SHARES`] (MNIST's own digits lie between 9% and 11.3%).
//!
//! FID values only mean something next to a scale, so [`Evaluator::scale`] measures three
//! references against the test digits: 10,000 real training digits (the floor: what a perfect
//! generator would score), the test digits blurred by a Gaussian of sigma 1 pixel, and N(0, 1)
//! noise images (clamped to [-1, 1], see [`noise_images`]).
//!
//! Everything works on any backend; functions that read results back are `async` (the browser
//! cannot block), and native callers wrap them in `pollster::block_on`.

pub mod calibrate;
pub mod classifier;
pub mod frechet;
pub mod readout;

use std::fmt;

use crate::backend::{BTensor, Backend, RandomKey};
use crate::data::mnist::{Mnist, CLASSES};
use crate::image::{digit_shape, PIXELS, SIDE};
use crate::nn::classifier::{weights, Classifier, FEATURES};
use crate::random;
use crate::Result;
use classifier::{argmax_rows, to_model_range, top_probability_rows, CHUNK};
pub use frechet::{frechet_distance, FeatureStats};
pub use weights::WeightsInfo;

/// A sample is legible when the classifier's top digit has at least this softmax probability.
pub const LEGIBLE_PROBABILITY: f32 = 0.9;

/// The range (in percent) a digit's share of the samples should lie in; a share outside it is
/// flagged, as a sign of a missing or dominant digit.
pub const BALANCED_SHARES: std::ops::RangeInclusive<f64> = 6.0..=14.0;

/// Digits in each set of the scale (and in the test set the reference statistics come from).
pub const SCALE_COUNT: usize = 10_000;

/// The classifier's view of a set of images.
#[derive(Clone, Debug, PartialEq)]
pub struct Classified {
    /// `[N, FEATURES]`, row-major: the penultimate features.
    pub features: Vec<f32>,
    /// `[N]`: the predicted digit of each image.
    pub classes: Vec<u8>,
    /// `[N]`: the softmax probability of that digit.
    pub confidence: Vec<f32>,
}

impl Classified {
    fn with_capacity(n: usize) -> Classified {
        Classified {
            features: Vec::with_capacity(n * FEATURES),
            classes: Vec::with_capacity(n),
            confidence: Vec::with_capacity(n),
        }
    }
}

/// The quality of a set of images against the reference statistics.
#[derive(Clone, Debug, PartialEq)]
pub struct Quality {
    /// Images measured.
    pub count: usize,
    /// Frechet distance between the images' features and the reference's.
    pub fid: f64,
    /// How many images the classifier assigns to each digit.
    pub class_histogram: [usize; CLASSES],
    /// Entropy of the class histogram in nats: ln 10 = 2.303 when every digit is equally
    /// frequent, 0 when all images are one digit.
    pub class_entropy: f64,
    /// The share (0 to 1) of images the classifier reads with probability >= 0.9.
    pub legible: f64,
}

impl Quality {
    /// The quality of classified images against `reference` (the test digits' statistics).
    pub fn new(classified: &Classified, reference: &FeatureStats) -> Result<Quality> {
        let stats = FeatureStats::new(&classified.features, FEATURES)?;
        let class_histogram = class_histogram(&classified.classes);
        Ok(Quality {
            count: classified.classes.len(),
            fid: frechet_distance(&stats, reference)?,
            class_histogram,
            class_entropy: class_entropy(&class_histogram),
            legible: legible_share(&classified.confidence),
        })
    }

    /// Each digit's share of the images, in percent.
    pub fn shares(&self) -> [f64; CLASSES] {
        readout::shares(&self.class_histogram)
    }

    /// The digits whose share lies outside [`BALANCED_SHARES`].
    pub fn unbalanced_digits(&self) -> Vec<u8> {
        (0..CLASSES as u8).filter(|&d| !BALANCED_SHARES.contains(&self.shares()[d as usize])).collect()
    }

    /// The shares as `0:9.8 1:11.2 ...`, with a `!` after each share outside [`BALANCED_SHARES`].
    pub fn shares_text(&self) -> String {
        self.shares()
            .iter()
            .enumerate()
            .map(|(d, s)| format!("{d}:{s:.1}{}", if BALANCED_SHARES.contains(s) { "" } else { "!" }))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// The share of `confidence` values at or above [`LEGIBLE_PROBABILITY`] (0 for none).
pub fn legible_share(confidence: &[f32]) -> f64 {
    let legible = confidence.iter().filter(|&&p| p >= LEGIBLE_PROBABILITY).count();
    legible as f64 / confidence.len().max(1) as f64
}

impl fmt::Display for Quality {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "FID {:>8.3}   legible {:>5.1}%   class entropy {:.3} (max 2.303)   shares % {}",
            self.fid,
            100.0 * self.legible,
            self.class_entropy,
            self.shares_text()
        )
    }
}

/// How many of `classes` fall on each digit.
pub fn class_histogram(classes: &[u8]) -> [usize; CLASSES] {
    let mut h = [0; CLASSES];
    for &c in classes {
        h[c as usize] += 1;
    }
    h
}

/// Entropy in nats of the distribution a histogram gives (0 for an empty one).
pub fn class_entropy(histogram: &[usize; CLASSES]) -> f64 {
    let total: usize = histogram.iter().sum();
    if total == 0 {
        return 0.0;
    }
    histogram
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = c as f64 / total as f64;
            -p * p.ln()
        })
        .sum()
}

/// The FID scale: three reference sets against the test digits.
#[derive(Clone, Debug, PartialEq)]
pub struct Scale {
    /// 10,000 real training digits: the best a generator can hope for.
    pub train: Quality,
    /// The test digits blurred by a Gaussian of sigma 1 pixel.
    pub blurred: Quality,
    /// N(0, 1) noise clamped to [-1, 1].
    pub noise: Quality,
}

impl fmt::Display for Scale {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "MNIST-FID scale (classifier features of {} images vs the MNIST test digits):", self.train.count)?;
        writeln!(f, "  real train digits     {}", self.train)?;
        writeln!(f, "  blurred test, sigma 1 {}", self.blurred)?;
        write!(f, "  N(0,1) noise, clamped {}", self.noise)
    }
}

/// Digits of a u8 dataset blurred by a Gaussian of `sigma` pixels, in the model's range [-1, 1].
/// The blur runs on ink in [0, 1] with zero (background) beyond the border, separably with a
/// kernel of radius `ceil(3 sigma)` normalised to sum 1, so the background stays exactly -1.
pub fn gaussian_blur(images: &[u8], sigma: f64) -> Vec<f32> {
    let radius = (3.0 * sigma).ceil() as isize;
    let mut kernel: Vec<f64> = (-radius..=radius).map(|i| (-(i * i) as f64 / (2.0 * sigma * sigma)).exp()).collect();
    let total: f64 = kernel.iter().sum();
    kernel.iter_mut().for_each(|k| *k /= total);
    let side = SIDE as isize;
    let mut out = Vec::with_capacity(images.len());
    let mut rows = vec![0.0f64; PIXELS];
    for image in images.chunks_exact(PIXELS) {
        let ink = |y: isize, x: isize| image[(y * side + x) as usize] as f64 / 255.0;
        for y in 0..side {
            for x in 0..side {
                rows[(y * side + x) as usize] = (-radius..=radius)
                    .filter(|d| (0..side).contains(&(x + d)))
                    .map(|d| kernel[(d + radius) as usize] * ink(y, x + d))
                    .sum();
            }
        }
        for y in 0..side {
            for x in 0..side {
                let v: f64 = (-radius..=radius)
                    .filter(|d| (0..side).contains(&(y + d)))
                    .map(|d| kernel[(d + radius) as usize] * rows[((y + d) * side + x) as usize])
                    .sum();
                out.push((2.0 * v - 1.0) as f32);
            }
        }
    }
    out
}

/// `count` noise images in the model's range: every pixel N(0, 1) (Philox, stream 0 of `seed`),
/// clamped to [-1, 1] as a generated image is clamped for display. About 16% of the pixels are
/// -1 (black), 16% are +1 (white), and the rest grey levels in between.
pub fn noise_images(count: usize, seed: u64) -> Vec<f32> {
    let key = RandomKey { seed, step: 0, stream: 0 };
    (0..count * PIXELS).map(|i| random::normal(key, i as u32).clamp(-1.0, 1.0)).collect()
}

/// The classifier with its weights on one backend.
pub struct Evaluator<B: Backend> {
    pub net: Classifier,
    pub params: BTensor<B>,
    pub info: WeightsInfo,
}

impl<B: Backend> Evaluator<B> {
    /// The shipped weights (embedded in the library).
    pub fn shipped(be: &B) -> Result<Self> {
        Self::from_safetensors(be, weights::SHIPPED, "the shipped classifier weights")
    }

    /// Weights from the bytes of a safetensors file; `source` names it in error messages.
    pub fn from_safetensors(be: &B, bytes: &[u8], source: &str) -> Result<Self> {
        let net = Classifier::fid();
        let (flat, info) = weights::load(&net, bytes, source)?;
        let params = be.upload(&flat, &[flat.len()]);
        Ok(Evaluator { net, params, info })
    }

    /// Features and predicted classes of images `[N, 1, 28, 28]` in the model's range [-1, 1]
    /// (on this backend), classified [`CHUNK`] at a time. Generated samples should be clamped
    /// to [-1, 1] first, as for display.
    pub async fn classify(&self, be: &B, images: &BTensor<B>) -> Result<Classified> {
        assert_eq!(images.shape, digit_shape(images.dim(0)), "classify: images must be [N, 1, {SIDE}, {SIDE}]");
        let n = images.dim(0);
        let mut out = Classified::with_capacity(n);
        for start in (0..n).step_by(CHUNK) {
            let count = CHUNK.min(n - start);
            let x = images.view(start * PIXELS, &digit_shape(count));
            self.classify_chunk(be, &x, &mut out).await?;
        }
        Ok(out)
    }

    /// [`Evaluator::classify`] of images held on the host (`[N * 784]` values in [-1, 1]),
    /// uploaded one chunk at a time.
    pub async fn classify_host(&self, be: &B, images: &[f32]) -> Result<Classified> {
        assert!(images.len().is_multiple_of(PIXELS), "classify_host: whole 28x28 images");
        let n = images.len() / PIXELS;
        let mut out = Classified::with_capacity(n);
        for chunk in images.chunks(CHUNK * PIXELS) {
            let x = be.upload(chunk, &digit_shape(chunk.len() / PIXELS));
            self.classify_chunk(be, &x, &mut out).await?;
        }
        Ok(out)
    }

    async fn classify_chunk(&self, be: &B, x: &BTensor<B>, out: &mut Classified) -> Result<()> {
        let result = self.net.forward(be, &self.params, x);
        let logits = be.read(&result.logits).await?;
        out.features.extend(be.read(&result.features).await?);
        out.classes.extend(argmax_rows(&logits));
        out.confidence.extend(top_probability_rows(&logits));
        Ok(())
    }

    /// Digits of a u8 dataset (the first `count`, or all when fewer), classified.
    pub async fn classify_digits(&self, be: &B, data: &Mnist, count: usize) -> Result<Classified> {
        let count = count.min(data.count);
        self.classify_host(be, &to_model_range(&data.images[..count * PIXELS])).await
    }

    /// The reference statistics: the features of the MNIST test digits (all 10,000 of them).
    pub async fn reference(&self, be: &B, test: &Mnist) -> Result<FeatureStats> {
        FeatureStats::new(&self.classify_digits(be, test, test.count).await?.features, FEATURES)
    }

    /// The quality of images `[N, 1, 28, 28]` in [-1, 1] (for instance 10,000 samples) against
    /// `reference` (from [`Evaluator::reference`]).
    pub async fn quality(&self, be: &B, images: &BTensor<B>, reference: &FeatureStats) -> Result<Quality> {
        Quality::new(&self.classify(be, images).await?, reference)
    }

    /// The FID scale against `reference`: the first 10,000 training digits, the test digits
    /// blurred with sigma 1, and 10,000 noise images of `seed`.
    pub async fn scale(
        &self,
        be: &B,
        train: &Mnist,
        test: &Mnist,
        reference: &FeatureStats,
        seed: u64,
    ) -> Result<Scale> {
        let train = Quality::new(&self.classify_digits(be, train, SCALE_COUNT).await?, reference)?;
        let count = SCALE_COUNT.min(test.count);
        let blurred = gaussian_blur(&test.images[..count * PIXELS], 1.0);
        let blurred = Quality::new(&self.classify_host(be, &blurred).await?, reference)?;
        let noise = Quality::new(&self.classify_host(be, &noise_images(SCALE_COUNT, seed)).await?, reference)?;
        Ok(Scale { train, blurred, noise })
    }
}
