//! A perceptual distance for digits: the LPIPS recipe of `docs/paper.md#the-perceptual-distance` on
//! a small MNIST classifier of our own ([`Architecture::PERCEPTUAL`], weights shipped in
//! `assets/mnist-perceptual.safetensors` and embedded). For images x and y,
//!
//! ```text
//! d(x, y) = sum_l 1/(H_l W_l) sum_{h,w} || u^l_hw - v^l_hw ||^2,
//! ```
//!
//! with u^l, v^l the outputs of the network's convolution stage l for x and y, each
//! unit-normalized across channels at every pixel, and w_l = 1 (LPIPS's uncalibrated variant:
//! there are no human judgments of digit similarity to learn weights from). The network is
//! frozen; its backward to the input runs on the backend's kernels like every other backward.
//!
//! The network is a different architecture, seed and training run from the MNIST-FID's, so
//! that a model trained with this distance is not graded on the features it was trained on
//! (the improved-techniques paper's warning about LPIPS flattering FID).

use crate::backend::{BTensor, Backend, Metric};
use crate::image::digit_shape;
use crate::nn::classifier::{weights, Architecture, Classifier, StageCache};

/// The frozen feature network on one backend.
pub struct Perceptual<B: Backend> {
    net: Classifier,
    params: BTensor<B>,
    /// Where the frozen network's unused GroupNorm gradients go.
    scratch: BTensor<B>,
}

/// What [`Perceptual::backward`] needs from [`Perceptual::distance`].
pub struct PerceptualCache<B: Backend> {
    stages: Vec<StageCache<B>>,
    /// Per stage: pred's activations, their channel norms, both normalized activations, the
    /// layer's weights and the loss kernel's saved statistics.
    layers: Vec<Layer<B>>,
}

/// A stage's activation, its channel norms and the normalized activation.
type Features<B> = (BTensor<B>, BTensor<B>, BTensor<B>);

struct Layer<B: Backend> {
    activation: BTensor<B>,
    norms: BTensor<B>,
    u: BTensor<B>,
    v: BTensor<B>,
    weight: BTensor<B>,
    stats: BTensor<B>,
}

impl<B: Backend> Perceptual<B> {
    /// The shipped network.
    pub fn shipped(be: &B) -> crate::Result<Self> {
        Self::from_safetensors(be, weights::PERCEPTUAL, "the shipped perceptual network")
    }

    /// A feature network's weights from the bytes of a safetensors file (`cm train-classifier
    /// --network perceptual`); `source` names it in error messages.
    pub fn from_safetensors(be: &B, bytes: &[u8], source: &str) -> crate::Result<Self> {
        let net = Classifier::new(Architecture::PERCEPTUAL);
        let (flat, _) = weights::load(&net, bytes, source)?;
        let scratch = be.zeros(&[net.layout.len]);
        Ok(Perceptual { params: be.upload(&flat, &[flat.len()]), net, scratch })
    }

    /// Unit-normalized stage activations of x: (activation, norms, normalized) per stage.
    fn features(&self, be: &B, x: &BTensor<B>) -> (Vec<Features<B>>, Vec<StageCache<B>>) {
        let (outputs, caches) = self.net.stage_activations(be, &self.params, x);
        let layers = outputs
            .into_iter()
            .map(|a| {
                let (n, s) = (a.dim(0), a.dim(2) * a.dim(3));
                let (u, norms) = (be.empty(&a.shape), be.empty(&[n, s]));
                be.channel_normalize(&a, &u, &norms);
                (a, norms, u)
            })
            .collect();
        (layers, caches)
    }

    /// Per-sample weighted distances `loss[n] = weight[n] d(pred[n], target[n])` of images
    /// `[N, 1, 28, 28]` (a `[N]` tensor), and what the gradient to pred needs.
    pub fn distance(
        &self,
        be: &B,
        pred: &BTensor<B>,
        target: &BTensor<B>,
        weight: &[f32],
    ) -> (BTensor<B>, PerceptualCache<B>) {
        let n = pred.dim(0);
        assert_eq!(weight.len(), n, "one weight per sample");
        let (pred_layers, stages) = self.features(be, pred);
        let (target_layers, _) = self.features(be, target);
        let mut total = be.zeros(&[n]);
        let mut layers = Vec::new();
        for ((activation, norms, u), (_, _, v)) in pred_layers.into_iter().zip(target_layers) {
            // The L2 loss op averages over the C H W values of a sample; sum over channels and
            // mean over space is C times that.
            let channels = activation.dim(1) as f32;
            let weight = be.upload(&weight.iter().map(|w| w * channels).collect::<Vec<_>>(), &[n]);
            let flat = |t: &BTensor<B>| t.reshape(&[n, t.len() / n]);
            let (per_sample, stats) = (be.empty(&[n]), be.empty(&[n]));
            be.loss(Metric::L2, &flat(&u), &flat(&v), &weight, &per_sample, &stats);
            let sum = be.empty(&[n]);
            be.add(&total, &per_sample, &sum);
            total = sum;
            layers.push(Layer { activation, norms, u, v, weight, stats });
        }
        (total, PerceptualCache { stages, layers })
    }

    /// The gradient to pred `[N, 1, 28, 28]` of `mean_n loss[n]` of [`Perceptual::distance`].
    pub fn backward(&self, be: &B, cache: &PerceptualCache<B>) -> BTensor<B> {
        let d_outputs: Vec<BTensor<B>> = cache
            .layers
            .iter()
            .map(|l| {
                let n = l.u.dim(0);
                let flat = |t: &BTensor<B>| t.reshape(&[n, t.len() / n]);
                let du = be.empty(&l.u.shape);
                be.loss_backward(Metric::L2, &flat(&l.u), &flat(&l.v), &l.weight, &l.stats, &flat(&du));
                let da = be.empty(&l.u.shape);
                be.channel_normalize_backward(&l.activation, &l.norms, &du, &da);
                da
            })
            .collect();
        let dx = self.net.input_gradient(be, &self.params, &self.scratch, &cache.stages, &d_outputs);
        assert_eq!(dx.shape, digit_shape(dx.dim(0)));
        dx
    }
}
