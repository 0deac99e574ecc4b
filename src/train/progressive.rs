//! Progressive distillation (`docs/paper.md` section 10): a student of M steps learns to
//! match two Euler steps of its teacher with one.

use std::ops::Range;

use super::{per_sample, Trainer, STREAM_LEVEL};
use crate::backend::{BTensor, Backend, Metric};
use crate::image::digit_shape;
use crate::ode::{self, Solver, Teacher};
use crate::recipe::Distance;
use crate::{random, schedule};

impl<B: Backend> Trainer<B> {
    /// Section 10, one step of a progressive-distillation stage: for a student of M steps, n
    /// uniform in 0..M, t = t_n and s = t_{n+1} on the student's Karras grid of M + 1 points
    /// (descending from T), two Euler (DDIM) steps of the teacher t -> t' -> s on the nested
    /// grid of 2M + 1 points, and the loss `w(t) ||D_student(x_t, t) - x_target||^2` with the
    /// denoiser target that reaches the teacher's point in one step.
    pub(super) fn progressive_gradients(&mut self, be: &B, rows: Range<usize>) -> BTensor<B> {
        let count = rows.len();
        let steps = self.config.student_steps(self.step);
        let fine: Vec<f64> = schedule::karras_grid(2 * steps + 1).into_iter().rev().collect();
        let key = self.key(STREAM_LEVEL);
        let index: Vec<usize> = (rows.start as u32..rows.end as u32)
            .map(|b| ((random::uniform(key, b) as f64 * steps as f64) as usize).min(steps - 1))
            .collect();
        let at = |offset: usize| -> Vec<f64> { index.iter().map(|&i| fine[2 * i + offset]).collect() };
        let (t, mid, s) = (at(0), at(1), at(2));

        let (x, z, labels) = self.data_and_noise(be, rows);
        let x_t = be.empty(&digit_shape(count));
        be.scale_add(&per_sample(be, t.iter().map(|_| 1.0)), &x, &per_sample(be, t.iter().copied()), &z, &x_t);
        let (model, params) = self.teacher.as_ref().expect("a progressive distillation has its teacher");
        let teacher = Teacher { model, params, labels: &labels, guidance: 1.0 };
        let x_mid = ode::step(be, &teacher, Solver::Euler, &x_t, &t, &mid);
        let x_s = ode::step(be, &teacher, Solver::Euler, &x_mid, &mid, &s);
        let (a, b): (Vec<f64>, Vec<f64>) =
            t.iter().zip(&s).map(|(&t, &s)| schedule::pd_target_coefficients(t, s)).unzip();
        let target = be.empty(&digit_shape(count));
        be.scale_add(&per_sample(be, a.into_iter()), &x_s, &per_sample(be, b.into_iter()), &x_t, &target);

        let (denoised, cache) = self.model.forward(be, &self.params, &x_t, &t, &labels);
        let weights: Vec<f64> = t.iter().map(|&t| schedule::pd_weight(t)).collect();
        self.backpropagate(be, Distance::Pixel(Metric::L2), &denoised, &target, &weights, &cache)
    }
}
