//! The small MNIST classifier behind the MNIST-FID: a CNN over 28x28 digits trained with our own
//! engine, whose penultimate layer (128 features) plays the role Inception's pool features play
//! in the FID of natural images.
//!
//! Architecture ([`Architecture::FID`]), each convolution followed by GroupNorm(8) + SiLU:
//!
//! ```text
//! x [N, 1, 28, 28] in [-1, 1]
//!   conv 3x3      1 -> 16   @28
//!   conv 3x3 s2  16 -> 32   @14
//!   conv 3x3     32 -> 32   @14
//!   conv 3x3 s2  32 -> 64   @7
//!   conv 3x3 s2  64 -> 64   @4
//!   global average pool     [N, 64]   (receptive field 21 x 21 pixels per position)
//!   linear 64 -> 128, SiLU  [N, 128]   the features
//!   linear 128 -> 10        [N, 10]    the logits
//! ```
//!
//! Training ([`train`]) draws minibatches on the device exactly as consistency training does
//! (`random_index` + `gather_rows`, so digits arrive in [-1, 1] as the consistency model sees
//! them), minimises the softmax cross entropy with Adam and a cosine learning-rate decay, and
//! needs no augmentation to pass 99% on the test set.

use super::super::nn::layers::{Conv, Linear, NormSilu};
use super::super::nn::params::ParamLayout;
use crate::backend::{AdamStep, BTensor, Backend, RandomKey};
use crate::data::mnist::{Mnist, CLASSES, IMAGE_PIXELS, IMAGE_SIDE};

/// A classifier's layer structure: its convolution stages, each (input channels, output
/// channels, stride), and the width of its penultimate features. The name is stored in a
/// weights file's metadata and checked on load.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Architecture {
    pub name: &'static str,
    pub stages: &'static [(usize, usize, usize)],
    pub features: usize,
}

impl Architecture {
    /// The network behind the MNIST-FID (the diagram above).
    pub const FID: Architecture = Architecture {
        name: "mnist-cnn-v1: conv3x3 1-16, 16-32/2, 32-32, 32-64/2, 64-64/2, each GN8+SiLU; avgpool; fc 64-128 SiLU; fc 128-10",
        stages: &[(1, 16, 1), (16, 32, 2), (32, 32, 1), (32, 64, 2), (64, 64, 2)],
        features: 128,
    };

    /// The network whose activations give the perceptual distance of training
    /// (`crate::perceptual`, `docs/paper.md#the-perceptual-distance`). It differs from [`Self::FID`]
    /// on purpose, so that training on its features never optimizes the evaluation's own:
    /// other widths (24/48/96 channels), four stages instead of five (its deepest features are
    /// 7x7, not 4x4), 64 features, and its own seed and training run.
    pub const PERCEPTUAL: Architecture = Architecture {
        name: "mnist-lpips-v1: conv3x3 1-24, 24-48/2, 48-48, 48-96/2, each GN8+SiLU; avgpool; fc 96-64 SiLU; fc 64-10",
        stages: &[(1, 24, 1), (24, 48, 2), (48, 48, 1), (48, 96, 2)],
        features: 64,
    };
}

/// Width of the FID network's penultimate features.
pub const FEATURES: usize = Architecture::FID.features;

/// Philox streams of one training step.
const STREAM_BATCH: u32 = 0;

pub struct Classifier {
    pub architecture: Architecture,
    pub layout: ParamLayout,
    /// Convolution and GroupNorm + SiLU of each stage, in order.
    stages: Vec<(Conv, NormSilu)>,
    fc1: Linear,
    fc2: Linear,
}

/// What [`Classifier::forward`] gives: the features, the logits, and what the backward needs.
pub struct ClassifierOutput<B: Backend> {
    /// `[N, FEATURES]`, after the SiLU.
    pub features: BTensor<B>,
    /// `[N, 10]`.
    pub logits: BTensor<B>,
    pub cache: ClassifierCache<B>,
}

/// Activations the backward needs: each stage's input, convolution output and GroupNorm
/// statistics, then the pooled vector, the first linear layer's output and the features.
pub struct ClassifierCache<B: Backend> {
    stages: Vec<StageCache<B>>,
    pooled: BTensor<B>,
    f1: BTensor<B>,
    features: BTensor<B>,
}

pub struct StageCache<B: Backend> {
    x: BTensor<B>,
    h: BTensor<B>,
    stats: BTensor<B>,
}

/// A `[n]` tensor holding `value` everywhere (per-sample coefficients of `scale_add`).
fn filled<B: Backend>(be: &B, n: usize, value: f32) -> BTensor<B> {
    be.upload(&vec![value; n], &[n])
}

impl Classifier {
    /// The MNIST-FID network.
    pub fn fid() -> Self {
        Self::new(Architecture::FID)
    }

    pub fn new(architecture: Architecture) -> Self {
        let mut l = ParamLayout::default();
        let stages = architecture
            .stages
            .iter()
            .enumerate()
            .map(|(i, &(cin, cout, stride))| {
                let conv = Conv::new(&mut l, &format!("conv{}", i + 1), cin, cout, 3, stride);
                (conv, NormSilu::new(&mut l, &format!("norm{}", i + 1), cout))
            })
            .collect();
        let last = architecture.stages[architecture.stages.len() - 1].1;
        let fc1 = Linear::new(&mut l, "fc1", last, architecture.features);
        let fc2 = Linear::new(&mut l, "fc2", architecture.features, CLASSES);
        Classifier { architecture, layout: l, stages, fc1, fc2 }
    }

    /// The last linear layer (features -> logits), which `super::calibrate` refits.
    pub fn head(&self) -> &Linear {
        &self.fc2
    }

    /// The output of every convolution stage (after its GroupNorm + SiLU) for digits x `[N, 1,
    /// 28, 28]` in [-1, 1], and what the backward passes need: the perceptual distance's
    /// features, and the start of [`Classifier::forward`].
    pub fn stage_activations<B: Backend>(
        &self,
        be: &B,
        params: &BTensor<B>,
        x: &BTensor<B>,
    ) -> (Vec<BTensor<B>>, Vec<StageCache<B>>) {
        assert_eq!(&x.shape[1..], [1, IMAGE_SIDE, IMAGE_SIDE], "classifier input must be [N, 1, 28, 28]");
        let mut a = x.clone();
        let (mut outputs, mut caches) = (Vec::new(), Vec::new());
        for (conv, norm) in &self.stages {
            let h = conv.forward(be, params, &a);
            let (next, stats) = norm.forward(be, params, &h);
            caches.push(StageCache { x: a, h, stats });
            outputs.push(next.clone());
            a = next;
        }
        (outputs, caches)
    }

    /// The gradient to the input x of a function of the stage activations, given its gradient
    /// `d_outputs[l]` to each stage's output. The weights stay frozen: their gradients are
    /// not needed, and the few GroupNorm ones the kernel writes anyway go to `scratch` (a
    /// tensor of this network's layout).
    pub fn input_gradient<B: Backend>(
        &self,
        be: &B,
        params: &BTensor<B>,
        scratch: &BTensor<B>,
        caches: &[StageCache<B>],
        d_outputs: &[BTensor<B>],
    ) -> BTensor<B> {
        assert_eq!(d_outputs.len(), self.stages.len(), "one output gradient per stage");
        let mut da = d_outputs[d_outputs.len() - 1].clone();
        for (i, ((conv, norm), s)) in self.stages.iter().zip(caches).enumerate().rev() {
            let dh = norm.backward(be, params, scratch, &s.h, &s.stats, &da);
            let dx = be.empty(&s.x.shape);
            be.conv2d_backward_input(&conv.geometry(&s.x.shape), &dh, &conv.weight.of(params), &dx);
            if i == 0 {
                return dx;
            }
            da = be.empty(&dx.shape);
            be.add(&dx, &d_outputs[i - 1], &da);
        }
        unreachable!("a classifier has at least one stage")
    }

    /// Features and logits of digits x `[N, 1, 28, 28]` in [-1, 1].
    pub fn forward<B: Backend>(&self, be: &B, params: &BTensor<B>, x: &BTensor<B>) -> ClassifierOutput<B> {
        let n = x.dim(0);
        let (outputs, stages) = self.stage_activations(be, params, x);
        let a = &outputs[outputs.len() - 1];
        // Global average pool: per-sample channel sums, scaled by 1 / (H W).
        let (c, area) = (a.dim(1), a.dim(2) * a.dim(3));
        let sums = be.empty(&[n, c]);
        be.channel_sum(a, &sums, true);
        let pooled = be.empty(&[n, c]);
        be.scale_add(&filled(be, n, 1.0 / area as f32), &sums, &filled(be, n, 0.0), &sums, &pooled);
        let f1 = self.fc1.forward(be, params, &pooled);
        let features = be.empty(&f1.shape);
        be.silu(&f1, &features);
        let logits = self.fc2.forward(be, params, &features);
        let cache = ClassifierCache { stages, pooled, f1, features: features.clone() };
        ClassifierOutput { features, logits, cache }
    }

    /// Writes the gradient of every parameter into `grads` (same layout as `params`) given the
    /// gradient of the logits.
    pub fn backward<B: Backend>(
        &self,
        be: &B,
        params: &BTensor<B>,
        grads: &BTensor<B>,
        cache: &ClassifierCache<B>,
        dlogits: &BTensor<B>,
    ) {
        let k = cache;
        let n = k.pooled.dim(0);
        let dfeatures = self.fc2.backward(be, params, grads, &k.features, dlogits, true).unwrap();
        let df1 = be.empty(&k.f1.shape);
        be.silu_backward(&k.f1, &dfeatures, &df1);
        let dpooled = self.fc1.backward(be, params, grads, &k.pooled, &df1, true).unwrap();
        // The average pool spreads dpooled / (H W) over the positions of its channel.
        let last = &k.stages[k.stages.len() - 1].h;
        let dsums = be.empty(&dpooled.shape);
        let area = (last.dim(2) * last.dim(3)) as f32;
        be.scale_add(&filled(be, n, 1.0 / area), &dpooled, &filled(be, n, 0.0), &dpooled, &dsums);
        let mut da = be.empty(&last.shape);
        be.add_channel_bias(&be.zeros(&last.shape), &dsums, &da);
        for (i, ((conv, norm), s)) in self.stages.iter().zip(&k.stages).enumerate().rev() {
            let dh = norm.backward(be, params, grads, &s.h, &s.stats, &da);
            // The first stage's input is data: no gradient needed.
            match conv.backward(be, params, grads, &s.x, &dh, i > 0) {
                Some(dx) => da = dx,
                None => break,
            }
        }
    }
}

/// How to train the classifier.
#[derive(Clone, Debug, PartialEq)]
pub struct TrainConfig {
    pub steps: u32,
    pub batch: usize,
    /// Peak Adam learning rate, after a linear warm-up over the first 2% of steps; it then
    /// decays to zero along a cosine.
    pub lr: f32,
    pub seed: u64,
}

impl Default for TrainConfig {
    /// The recipe of the shipped weights.
    fn default() -> Self {
        TrainConfig { steps: 3000, batch: 64, lr: 3e-3, seed: 0 }
    }
}

impl TrainConfig {
    /// The learning rate at step k (0-based).
    pub fn lr_at(&self, k: u32) -> f32 {
        let warmup = (self.steps / 50).max(1);
        if k < warmup {
            return self.lr * (k + 1) as f32 / warmup as f32;
        }
        let progress = (k - warmup) as f64 / (self.steps - warmup).max(1) as f64;
        (self.lr as f64 * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())) as f32
    }
}

/// A training run of the classifier on one backend: weights, Adam's moments and the training
/// set (images and labels as u8) on the device.
pub struct Trainer<B: Backend> {
    pub net: Classifier,
    pub config: TrainConfig,
    pub params: BTensor<B>,
    grads: BTensor<B>,
    adam_m: BTensor<B>,
    adam_v: BTensor<B>,
    images: B::Bytes,
    labels: B::Bytes,
    count: usize,
    /// Steps taken so far.
    pub step: u32,
}

impl<B: Backend> Trainer<B> {
    /// A new run of `net` from the Philox initialisation of `config.seed`.
    pub fn new(be: &B, net: Classifier, config: TrainConfig, data: &Mnist) -> Self {
        let init = net.layout.init(config.seed);
        let len = net.layout.len;
        Trainer {
            params: be.upload(&init, &[len]),
            grads: be.zeros(&[len]),
            adam_m: be.zeros(&[len]),
            adam_v: be.zeros(&[len]),
            images: be.upload_bytes(&data.images),
            labels: be.upload_bytes(&data.labels),
            count: data.count,
            net,
            config,
            step: 0,
        }
    }

    /// Records one step (minibatch gather, forward, cross entropy, backward, Adam) and returns
    /// the batch's mean loss (a one-element tensor; nothing is read back).
    pub fn step(&mut self, be: &B) -> BTensor<B> {
        let (batch, k) = (self.config.batch, self.step);
        let index = be.empty(&[batch]);
        be.random_index(RandomKey { seed: self.config.seed, step: k, stream: STREAM_BATCH }, self.count as u32, &index);
        let x = be.empty(&[batch, 1, IMAGE_SIDE, IMAGE_SIDE]);
        be.gather_rows(&self.images, IMAGE_PIXELS, &index, &x.reshape(&[batch, IMAGE_PIXELS]));
        // gather_rows maps a label byte l to (2 l - 255) / 255; 127.5 v + 127.5 brings it back to
        // l up to rounding, which the cross entropy's rounding of labels absorbs.
        let scaled = be.empty(&[batch, 1]);
        be.gather_rows(&self.labels, 1, &index, &scaled);
        let half = filled(be, batch, 127.5);
        let labels = be.empty(&[batch]);
        be.scale_add(&half, &scaled.reshape(&[batch]), &half, &filled(be, batch, 1.0), &labels);

        let out = self.net.forward(be, &self.params, &x);
        let per_sample = be.empty(&[batch]);
        be.softmax_cross_entropy(&out.logits, &labels, &per_sample);
        let loss = be.empty(&[1]);
        be.sum(&per_sample, &loss, false, 1.0 / batch as f32);
        let dlogits = be.empty(&out.logits.shape);
        be.softmax_cross_entropy_backward(&out.logits, &labels, &dlogits);
        self.net.backward(be, &self.params, &self.grads, &out.cache, &dlogits);

        let grad_sumsq = be.empty(&[1]);
        be.sum(&self.grads, &grad_sumsq, true, 1.0);
        let adam =
            AdamStep { lr: self.config.lr_at(k), beta1: 0.9, beta2: 0.999, eps: 1e-8, t: k + 1, max_grad_norm: 5.0 };
        be.adam(&adam, &self.params, &self.grads, &self.adam_m, &self.adam_v, &grad_sumsq);
        self.step += 1;
        loss
    }
}

/// Trains a classifier of `architecture` from scratch on `train` (all of `config.steps` steps), reading the loss
/// back every `report_every` steps for `report(step, loss)` (0 never), then measures it on
/// `test`. Returns the flat weights and what the weights file records about them.
pub async fn train<B: Backend>(
    be: &B,
    architecture: Architecture,
    config: TrainConfig,
    train: &Mnist,
    test: &Mnist,
    report_every: u32,
    mut report: impl FnMut(u32, f32),
) -> crate::Result<(Vec<f32>, super::weights::WeightsInfo)> {
    let mut trainer = Trainer::new(be, Classifier::new(architecture), config.clone(), train);
    for k in 0..config.steps {
        let loss = trainer.step(be);
        if report_every > 0 && ((k + 1) % report_every == 0 || k + 1 == config.steps) {
            report(k + 1, be.read(&loss).await?[0]);
        }
    }
    let test_accuracy = accuracy(be, &trainer.net, &trainer.params, test).await?;
    let info = super::weights::WeightsInfo {
        architecture: architecture.name.to_string(),
        test_accuracy,
        seed: config.seed,
        steps: config.steps,
    };
    Ok((be.read(&trainer.params).await?, info))
}

/// Digits of a u8 dataset as the classifier (and the consistency model) sees them:
/// `(2 b - 255) / 255`, the expression of `gather_rows`, so host and device agree bit for bit.
pub fn to_model_range(bytes: &[u8]) -> Vec<f32> {
    bytes.iter().map(|&b| (2.0 * b as f32 - 255.0) * (1.0 / 255.0)).collect()
}

/// Index of the largest logit of each row of `logits` (`[N, 10]`, row-major).
pub fn argmax_rows(logits: &[f32]) -> Vec<u8> {
    logits
        .chunks_exact(CLASSES)
        .map(|row| {
            let mut best = 0;
            for (j, &z) in row.iter().enumerate() {
                if z > row[best] {
                    best = j;
                }
            }
            best as u8
        })
        .collect()
}

/// The softmax probability of the largest logit of each row of `logits` (`[N, 10]`): how sure
/// the classifier is of the digit it reads. Computed stably, relative to the row's maximum.
pub fn top_probability_rows(logits: &[f32]) -> Vec<f32> {
    logits
        .chunks_exact(CLASSES)
        .map(|row| {
            let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let total: f32 = row.iter().map(|&z| (z - max).exp()).sum();
            1.0 / total
        })
        .collect()
}

/// Images per forward pass when classifying a whole set: bounded memory on any backend.
pub const CHUNK: usize = 500;

/// Fraction of `data` the classifier with weights `params` labels correctly, in chunks of
/// [`CHUNK`].
pub async fn accuracy<B: Backend>(be: &B, net: &Classifier, params: &BTensor<B>, data: &Mnist) -> crate::Result<f64> {
    let mut correct = 0usize;
    for start in (0..data.count).step_by(CHUNK) {
        let n = CHUNK.min(data.count - start);
        let pixels = to_model_range(&data.images[start * IMAGE_PIXELS..(start + n) * IMAGE_PIXELS]);
        let x = be.upload(&pixels, &[n, 1, IMAGE_SIDE, IMAGE_SIDE]);
        let logits = be.read(&net.forward(be, params, &x).logits).await?;
        correct += argmax_rows(&logits).iter().zip(&data.labels[start..start + n]).filter(|(p, l)| p == l).count();
    }
    Ok(correct as f64 / data.count as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameter_count() {
        // convs 160 + 4,640 + 9,248 + 18,496 + 36,928, norms 2 (16 + 32 + 32 + 64 + 64) = 416,
        // fc1 8,320, fc2 1,290.
        assert_eq!(Classifier::fid().layout.count(), 79_498);
    }

    #[test]
    fn learning_rate_warms_up_and_decays_to_zero() {
        let c = TrainConfig { steps: 1000, batch: 8, lr: 1e-3, seed: 0 };
        // Warm-up over steps / 50 = 20 steps: lr / 20 at step 0, the full lr from step 19.
        assert!((c.lr_at(0) - 5e-5).abs() < 1e-9);
        assert!((c.lr_at(19) - 1e-3).abs() < 1e-9);
        assert!((c.lr_at(20) - 1e-3).abs() < 1e-9);
        assert!(c.lr_at(999) < 1e-7);
        assert!(c.lr_at(500) < c.lr_at(400));
    }
}
