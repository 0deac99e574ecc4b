//! Consistency tuning (ECT, `docs/paper.md` section 11): from a diffusion teacher's weights,
//! the online network's own output at a second time r < t is the target, and r approaches t
//! stage by stage.

use std::ops::Range;

use super::{per_sample, Trainer, STREAM_LEVEL};
use crate::backend::{BTensor, Backend};
use crate::image::digit_shape;
use crate::{random, schedule};

impl<B: Backend> Trainer<B> {
    /// Section 11, one step of consistency tuning: ln t ~ N(-1.1, 2^2) (clamped to [eps, T]),
    /// r at the current stage, and `d(f(x + t z, t), stopgrad f(x + r z, r)) / (t - r)` with the
    /// online weights on both sides; where r <= eps the target is the clean digit x itself
    /// (f(x, eps) = x exactly, so the same forward gives it).
    pub(super) fn tuning_gradients(&mut self, be: &B, rows: Range<usize>, q: f64) -> BTensor<B> {
        let count = rows.len();
        let stage = self.config.stage(self.step);
        let key = self.key(STREAM_LEVEL);
        let t: Vec<f64> = (rows.start as u32..rows.end as u32)
            .map(|b| {
                (schedule::P_MEAN + schedule::P_STD * random::normal(key, b) as f64)
                    .exp()
                    .clamp(schedule::EPS, schedule::T)
            })
            .collect();
        let r: Vec<f64> = t.iter().map(|&t| schedule::ect_second_time(t, q, stage)).collect();
        // The target's time, and its noise level (0 for the clean digit).
        let r_time: Vec<f64> = r.iter().map(|&r| r.max(schedule::EPS)).collect();
        let r_noise: Vec<f64> = r.iter().map(|&r| if r > schedule::EPS { r } else { 0.0 }).collect();

        let (x, z, labels) = self.data_and_noise(be, rows);
        let ones = per_sample(be, t.iter().map(|_| 1.0));
        let x_t = be.empty(&digit_shape(count));
        be.scale_add(&ones, &x, &per_sample(be, t.iter().copied()), &z, &x_t);
        let x_r = be.empty(&digit_shape(count));
        be.scale_add(&ones, &x, &per_sample(be, r_noise.into_iter()), &z, &x_r);

        let (online, cache) = self.model.forward(be, &self.params, &x_t, &t, &labels);
        let (target, _) = self.model.forward(be, &self.params, &x_r, &r_time, &labels);
        // t = eps (a clamped draw) has r < eps too; its loss has no gradient (c_out(eps) = 0),
        // and the weight is kept finite.
        let weights: Vec<f64> = t.iter().zip(&r).map(|(&t, &r)| 1.0 / (t - r).max(1e-6)).collect();
        self.backpropagate(be, self.config.distance, &online, &target, &weights, &cache)
    }
}
