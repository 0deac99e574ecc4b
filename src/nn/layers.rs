//! The layers of the reference U-Net, each with its forward and hand-written backward pass.
//!
//! A forward returns its output plus whatever its backward needs (the layer input, GroupNorm
//! statistics). A backward writes the layer's parameter gradients into the flat gradient tensor
//! (overwriting: every parameter is used once per forward) and returns the gradient of its
//! input.

use super::params::{Init, Param, ParamLayout};
use crate::backend::{BTensor, Backend, Conv2d};

/// GroupNorm uses this many groups everywhere (`docs/paper.md#the-reference-network`).
pub const GROUPS: usize = 8;

/// 2-D convolution with bias, 'same' padding, kernel 1 or 3, stride 1 or 2.
pub struct Conv {
    pub weight: Param,
    pub bias: Param,
    pub in_channels: usize,
    pub out_channels: usize,
    pub kernel: usize,
    pub stride: usize,
}

impl Conv {
    pub fn new(layout: &mut ParamLayout, name: &str, cin: usize, cout: usize, kernel: usize, stride: usize) -> Self {
        let fan_in = cin * kernel * kernel;
        Conv {
            weight: layout.add(&format!("{name}.weight"), &[cout, cin, kernel, kernel], Init::FanIn(fan_in)),
            bias: layout.add(&format!("{name}.bias"), &[cout], Init::Zeros),
            in_channels: cin,
            out_channels: cout,
            kernel,
            stride,
        }
    }

    pub fn geometry(&self, input_shape: &[usize]) -> Conv2d {
        assert_eq!(input_shape[1], self.in_channels, "conv {} input channels", self.weight.name);
        Conv2d {
            batch: input_shape[0],
            in_channels: self.in_channels,
            out_channels: self.out_channels,
            height: input_shape[2],
            width: input_shape[3],
            kernel: self.kernel,
            stride: self.stride,
        }
    }

    pub fn forward<B: Backend>(&self, be: &B, params: &BTensor<B>, x: &BTensor<B>) -> BTensor<B> {
        let g = self.geometry(&x.shape);
        let y = be.empty(&g.output_shape());
        be.conv2d(&g, x, &self.weight.of(params), &self.bias.of(params), &y);
        y
    }

    /// Parameter gradients from the layer input `x` and output gradient `dy`; the input gradient
    /// only when `input_grad` (the stem needs none).
    pub fn backward<B: Backend>(
        &self,
        be: &B,
        params: &BTensor<B>,
        grads: &BTensor<B>,
        x: &BTensor<B>,
        dy: &BTensor<B>,
        input_grad: bool,
    ) -> Option<BTensor<B>> {
        let g = self.geometry(&x.shape);
        be.conv2d_backward_weight(&g, dy, x, &self.weight.of(grads));
        be.channel_sum(dy, &self.bias.of(grads), false);
        input_grad.then(|| {
            let dx = be.empty(&x.shape);
            be.conv2d_backward_input(&g, dy, &self.weight.of(params), &dx);
            dx
        })
    }
}

/// Fully connected layer `y = x W^T + b`.
pub struct Linear {
    pub weight: Param,
    pub bias: Param,
    pub in_features: usize,
    pub out_features: usize,
}

impl Linear {
    pub fn new(layout: &mut ParamLayout, name: &str, inputs: usize, outputs: usize) -> Self {
        Self::with_weight_init(layout, name, inputs, outputs, Init::FanIn(inputs))
    }

    /// A linear layer whose weight starts as `init` (the bias starts at zero).
    pub fn with_weight_init(layout: &mut ParamLayout, name: &str, inputs: usize, outputs: usize, init: Init) -> Self {
        Linear {
            weight: layout.add(&format!("{name}.weight"), &[outputs, inputs], init),
            bias: layout.add(&format!("{name}.bias"), &[outputs], Init::Zeros),
            in_features: inputs,
            out_features: outputs,
        }
    }

    pub fn forward<B: Backend>(&self, be: &B, params: &BTensor<B>, x: &BTensor<B>) -> BTensor<B> {
        let y = be.empty(&[x.dim(0), self.out_features]);
        be.linear(x, &self.weight.of(params), &self.bias.of(params), &y);
        y
    }

    pub fn backward<B: Backend>(
        &self,
        be: &B,
        params: &BTensor<B>,
        grads: &BTensor<B>,
        x: &BTensor<B>,
        dy: &BTensor<B>,
        input_grad: bool,
    ) -> Option<BTensor<B>> {
        be.linear_backward_weight(dy, x, &self.weight.of(grads));
        be.channel_sum(&dy.reshape(&[dy.dim(0), self.out_features, 1]), &self.bias.of(grads), false);
        input_grad.then(|| {
            let dx = be.empty(&x.shape);
            be.linear_backward_input(dy, &self.weight.of(params), &dx);
            dx
        })
    }
}

/// GroupNorm(8) with affine scale and shift, followed by SiLU (fused into one kernel: in this
/// network every normalisation is followed by the activation).
pub struct NormSilu {
    pub gamma: Param,
    pub beta: Param,
    pub channels: usize,
}

impl NormSilu {
    pub fn new(layout: &mut ParamLayout, name: &str, channels: usize) -> Self {
        assert!(channels.is_multiple_of(GROUPS), "{name}: {channels} channels do not split into {GROUPS} groups");
        NormSilu {
            gamma: layout.add(&format!("{name}.gamma"), &[channels], Init::Ones),
            beta: layout.add(&format!("{name}.beta"), &[channels], Init::Zeros),
            channels,
        }
    }

    /// Returns the output and the per-group statistics the backward needs.
    pub fn forward<B: Backend>(&self, be: &B, params: &BTensor<B>, x: &BTensor<B>) -> (BTensor<B>, BTensor<B>) {
        let y = be.empty(&x.shape);
        let stats = be.empty(&[x.dim(0), GROUPS, 2]);
        be.group_norm(GROUPS, true, x, &self.gamma.of(params), &self.beta.of(params), &y, &stats);
        (y, stats)
    }

    pub fn backward<B: Backend>(
        &self,
        be: &B,
        params: &BTensor<B>,
        grads: &BTensor<B>,
        x: &BTensor<B>,
        stats: &BTensor<B>,
        dy: &BTensor<B>,
    ) -> BTensor<B> {
        let dx = be.empty(&x.shape);
        be.group_norm_backward(
            GROUPS,
            true,
            dy,
            x,
            &self.gamma.of(params),
            &self.beta.of(params),
            stats,
            &dx,
            &self.gamma.of(grads),
            &self.beta.of(grads),
        );
        dx
    }
}

/// What a [`ResBlock`] keeps from its forward for its backward.
pub struct ResBlockCache<B: Backend> {
    x: BTensor<B>,
    stats1: BTensor<B>,
    a1: BTensor<B>,
    h2: BTensor<B>,
    stats2: BTensor<B>,
    a2: BTensor<B>,
}

/// `h = Conv3x3(SiLU(GN(x))); h += Linear(temb) per channel; h = Conv3x3(SiLU(GN(h)));
/// out = h + (x or Conv1x1(x))` (`docs/paper.md#the-reference-network`).
pub struct ResBlock {
    pub norm1: NormSilu,
    pub conv1: Conv,
    pub time: Linear,
    pub norm2: NormSilu,
    pub conv2: Conv,
    /// A 1x1 convolution on the skip path when the channel count changes.
    pub skip: Option<Conv>,
}

impl ResBlock {
    pub fn new(layout: &mut ParamLayout, name: &str, cin: usize, cout: usize, time_dim: usize) -> Self {
        ResBlock {
            norm1: NormSilu::new(layout, &format!("{name}.norm1"), cin),
            conv1: Conv::new(layout, &format!("{name}.conv1"), cin, cout, 3, 1),
            time: Linear::new(layout, &format!("{name}.time"), time_dim, cout),
            norm2: NormSilu::new(layout, &format!("{name}.norm2"), cout),
            conv2: Conv::new(layout, &format!("{name}.conv2"), cout, cout, 3, 1),
            skip: (cin != cout).then(|| Conv::new(layout, &format!("{name}.skip"), cin, cout, 1, 1)),
        }
    }

    pub fn forward<B: Backend>(
        &self,
        be: &B,
        params: &BTensor<B>,
        x: &BTensor<B>,
        temb: &BTensor<B>,
    ) -> (BTensor<B>, ResBlockCache<B>) {
        let (a1, stats1) = self.norm1.forward(be, params, x);
        let h1 = self.conv1.forward(be, params, &a1);
        let e = self.time.forward(be, params, temb);
        let h2 = be.empty(&h1.shape);
        be.add_channel_bias(&h1, &e, &h2);
        let (a2, stats2) = self.norm2.forward(be, params, &h2);
        let h3 = self.conv2.forward(be, params, &a2);
        let out = be.empty(&h3.shape);
        match &self.skip {
            Some(skip) => be.add(&h3, &skip.forward(be, params, x), &out),
            None => be.add(&h3, x, &out),
        }
        (out, ResBlockCache { x: x.clone(), stats1, a1, h2, stats2, a2 })
    }

    /// Returns the gradient of the block input and this block's contribution to the gradient
    /// of the time embedding.
    pub fn backward<B: Backend>(
        &self,
        be: &B,
        params: &BTensor<B>,
        grads: &BTensor<B>,
        temb: &BTensor<B>,
        cache: &ResBlockCache<B>,
        dout: &BTensor<B>,
    ) -> (BTensor<B>, BTensor<B>) {
        let da2 = self.conv2.backward(be, params, grads, &cache.a2, dout, true).unwrap();
        let dh2 = self.norm2.backward(be, params, grads, &cache.h2, &cache.stats2, &da2);
        // The per-channel time bias: its gradient is dh2 summed over each sample's pixels.
        let de = be.empty(&[dh2.dim(0), dh2.dim(1)]);
        be.channel_sum(&dh2, &de, true);
        let dtemb = self.time.backward(be, params, grads, temb, &de, true).unwrap();
        let da1 = self.conv1.backward(be, params, grads, &cache.a1, &dh2, true).unwrap();
        let dx_main = self.norm1.backward(be, params, grads, &cache.x, &cache.stats1, &da1);
        let dx = be.empty(&cache.x.shape);
        match &self.skip {
            Some(skip) => {
                let dx_skip = skip.backward(be, params, grads, &cache.x, dout, true).unwrap();
                be.add(&dx_main, &dx_skip, &dx);
            }
            None => be.add(&dx_main, dout, &dx),
        }
        (dx, dtemb)
    }
}
