//! The EDM diffusion teacher's objective (`docs/paper.md` section 4): denoising score
//! matching.

use std::ops::Range;

use super::{Trainer, STREAM_LEVEL};
use crate::backend::{BTensor, Backend, Metric};
use crate::image::digit_shape;
use crate::recipe::Distance;
use crate::{random, schedule};

impl<B: Backend> Trainer<B> {
    /// Section 4's denoising score matching for the EDM teacher: per sample ln t ~ N(-1.2,
    /// 1.2^2) and the loss `lambda(t) mean_pixels (D(x + t z, t) - x)^2`.
    pub(super) fn denoising_gradients(&mut self, be: &B, rows: Range<usize>) -> BTensor<B> {
        let count = rows.len();
        let key = self.key(STREAM_LEVEL);
        let times: Vec<f64> = (rows.start as u32..rows.end as u32)
            .map(|b| (schedule::P_MEAN_EDM + schedule::P_STD_EDM * random::normal(key, b) as f64).exp())
            .collect();
        let (x, z, labels) = self.data_and_noise(be, rows);
        let ones = be.upload(&vec![1.0; count], &[count]);
        let t = be.upload(&times.iter().map(|&t| t as f32).collect::<Vec<_>>(), &[count]);
        let noisy = be.empty(&digit_shape(count));
        be.scale_add(&ones, &x, &t, &z, &noisy);
        let (denoised, cache) = self.model.forward(be, &self.params, &noisy, &times, &labels);
        let weights: Vec<f64> = times.iter().map(|&t| schedule::edm_lambda(t)).collect();
        self.backpropagate(be, Distance::Pixel(Metric::L2), &denoised, &x, &weights, &cache)
    }
}
