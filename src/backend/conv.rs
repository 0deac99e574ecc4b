//! Convolutions and linear layers, and the channel sums that give their bias gradients
//! (implemented in `cpu/conv.rs` and `gpu/conv.rs`).

use super::{BTensor, Memory};

/// Geometry of a 2-D convolution with 'same'-style padding `(k - 1) / 2`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Conv2d {
    pub batch: usize,
    pub in_channels: usize,
    pub out_channels: usize,
    pub height: usize,
    pub width: usize,
    /// Square kernel size: 1 or 3.
    pub kernel: usize,
    /// 1 or 2.
    pub stride: usize,
}

impl Conv2d {
    pub fn pad(&self) -> usize {
        (self.kernel - 1) / 2
    }
    pub fn out_height(&self) -> usize {
        (self.height + 2 * self.pad() - self.kernel) / self.stride + 1
    }
    pub fn out_width(&self) -> usize {
        (self.width + 2 * self.pad() - self.kernel) / self.stride + 1
    }
    pub fn input_shape(&self) -> [usize; 4] {
        [self.batch, self.in_channels, self.height, self.width]
    }
    pub fn output_shape(&self) -> [usize; 4] {
        [self.batch, self.out_channels, self.out_height(), self.out_width()]
    }
    pub fn weight_shape(&self) -> [usize; 4] {
        [self.out_channels, self.in_channels, self.kernel, self.kernel]
    }
    /// Multiply-adds of the forward pass, times two.
    pub fn flops(&self) -> f64 {
        2.0 * (self.batch * self.out_channels * self.out_height() * self.out_width()) as f64
            * (self.in_channels * self.kernel * self.kernel) as f64
    }
}

/// Convolution and linear layers.
pub trait ConvOps: Memory {
    /// `y = conv(x, w) + b`; x `[N, Cin, H, W]`, w `[Cout, Cin, k, k]`, b `[Cout]`.
    fn conv2d(&self, g: &Conv2d, x: &BTensor<Self>, w: &BTensor<Self>, b: &BTensor<Self>, y: &BTensor<Self>);
    /// `dx = d(loss)/dx` from `dy`.
    fn conv2d_backward_input(&self, g: &Conv2d, dy: &BTensor<Self>, w: &BTensor<Self>, dx: &BTensor<Self>);
    /// `dw = d(loss)/dw` from `dy` and the layer input `x`.
    fn conv2d_backward_weight(&self, g: &Conv2d, dy: &BTensor<Self>, x: &BTensor<Self>, dw: &BTensor<Self>);
    /// `y = x w^T + b`; x `[N, I]`, w `[O, I]`, b `[O]`, y `[N, O]`.
    fn linear(&self, x: &BTensor<Self>, w: &BTensor<Self>, b: &BTensor<Self>, y: &BTensor<Self>);
    /// `dx = dy w`.
    fn linear_backward_input(&self, dy: &BTensor<Self>, w: &BTensor<Self>, dx: &BTensor<Self>);
    /// `dw = dy^T x`.
    fn linear_backward_weight(&self, dy: &BTensor<Self>, x: &BTensor<Self>, dw: &BTensor<Self>);
    /// Sum of x `[N, C, S]` over N and S into out `[C]` (bias gradients), or over S alone into
    /// out `[N, C]` when `per_sample` (gradient of a per-sample channel bias).
    fn channel_sum(&self, x: &BTensor<Self>, out: &BTensor<Self>, per_sample: bool);
}
