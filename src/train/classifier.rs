//! Training the MNIST classifier ([`crate::nn::classifier`]).
//!
//! [`train`] draws minibatches on the device exactly as consistency training does
//! (`random_index` + `gather_rows`, so digits arrive in [-1, 1] as the consistency model sees
//! them), minimises the softmax cross entropy with Adam and a cosine learning-rate decay, and
//! needs no augmentation to pass 99% on the test set.

use crate::backend::{BTensor, Backend, RandomKey};
use crate::data::mnist::Mnist;
use crate::eval::classifier::accuracy;
use crate::image::{digit_shape, PIXELS};
use crate::nn::classifier::weights::WeightsInfo;
use crate::nn::classifier::{filled, Architecture, Classifier};
use crate::nn::Adam;

/// Philox streams of one training step.
const STREAM_BATCH: u32 = 0;

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
    adam: Adam<B>,
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
            adam: Adam::new(be, len),
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
        let x = be.empty(&digit_shape(batch));
        be.gather_rows(&self.images, PIXELS, &index, &x.reshape(&[batch, PIXELS]));
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

        self.adam.step(be, &self.params, &self.grads, self.config.lr_at(k), k + 1, 5.0);
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
) -> crate::Result<(Vec<f32>, WeightsInfo)> {
    let mut trainer = Trainer::new(be, Classifier::new(architecture), config.clone(), train);
    for k in 0..config.steps {
        let loss = trainer.step(be);
        if report_every > 0 && ((k + 1) % report_every == 0 || k + 1 == config.steps) {
            report(k + 1, be.read(&loss).await?[0]);
        }
    }
    let test_accuracy = accuracy(be, &trainer.net, &trainer.params, test).await?;
    let info = WeightsInfo {
        architecture: architecture.name.to_string(),
        test_accuracy,
        seed: config.seed,
        steps: config.steps,
    };
    Ok((be.read(&trainer.params).await?, info))
}

#[cfg(test)]
mod tests {
    use super::*;

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
