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
//!
//! Its trained weights ([`weights`]) are shipped in `assets/` and embedded in the library.

pub mod weights;

use crate::backend::{BTensor, Backend};
use crate::data::mnist::CLASSES;
use crate::image::{digit_shape, SIDE};
use crate::nn::layers::{Conv, Linear, NormSilu};
use crate::nn::params::ParamLayout;

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
pub(crate) fn filled<B: Backend>(be: &B, n: usize, value: f32) -> BTensor<B> {
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

    /// The last linear layer (features -> logits), which `crate::eval::calibrate` refits.
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
        assert_eq!(x.shape, digit_shape(x.dim(0)), "classifier input must be [N, 1, {SIDE}, {SIDE}]");
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameter_count() {
        // convs 160 + 4,640 + 9,248 + 18,496 + 36,928, norms 2 (16 + 32 + 32 + 64 + 64) = 416,
        // fc1 8,320, fc2 1,290.
        assert_eq!(Classifier::fid().layout.count(), 79_498);
    }
}
