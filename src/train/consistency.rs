//! Consistency training and consistency distillation (`docs/paper.md` sections 4-6,
//! Algorithms 2 and 3): the online network at t_{n+1} against the target network at t_n, on a
//! time grid that grows along the curriculum (training) or is fixed (distillation).

use std::ops::Range;

use super::{Trainer, STREAM_LEVEL};
use crate::backend::{BTensor, Backend};
use crate::image::digit_shape;
use crate::ode::{self, Solver, Teacher};
use crate::random;
use crate::schedule::NoiseLevels;

/// The host-side draws of one step: per-sample noise levels and loss weights.
struct Levels {
    t_n: Vec<f64>,
    t_next: Vec<f64>,
    weight: Vec<f32>,
}

impl<B: Backend> Trainer<B> {
    /// n for samples `rows` of the batch from the discretization N(k), then (t_n, t_{n+1}) and
    /// lambda(t_n).
    fn draw_levels(&self, discretization: usize, rows: Range<usize>) -> Levels {
        let levels = NoiseLevels::new(discretization, self.config.index_choice);
        let times = levels.times();
        let key = self.key(STREAM_LEVEL);
        let mut out = Levels { t_n: vec![], t_next: vec![], weight: vec![] };
        for b in rows.start as u32..rows.end as u32 {
            let i = levels.sample_index(random::uniform(key, b) as f64);
            let (t_n, t_next) = (times[i], times[i + 1]);
            out.t_n.push(t_n);
            out.t_next.push(t_next);
            out.weight.push(self.config.weighting.lambda(t_n, t_next) as f32);
        }
        out
    }

    /// Consistency training (Algorithm 3 with the iCT switches) on samples `rows` of the batch,
    /// or, with a teacher's `solver`, consistency distillation (Algorithm 2): the same loss, but
    /// the target network sees one solver step of the teacher's ODE from `x + t_{n+1} z` down to
    /// t_n instead of `x + t_n z`.
    pub(super) fn consistency_gradients(
        &mut self,
        be: &B,
        rows: Range<usize>,
        distill: Option<(Solver, f64)>,
    ) -> BTensor<B> {
        let count = rows.len();
        let levels = self.draw_levels(self.config.discretization(self.step), rows.clone());

        // x ~ data, z ~ N(0, I), one z shared by both points of the trajectory.
        let (x, z, labels) = self.data_and_noise(be, rows);
        let ones = be.upload(&vec![1.0; count], &[count]);
        let noised = |t: &[f64]| {
            let t = be.upload(&t.iter().map(|&v| v as f32).collect::<Vec<_>>(), &[count]);
            let out = be.empty(&digit_shape(count));
            be.scale_add(&ones, &x, &t, &z, &out);
            out
        };
        let x_next = noised(&levels.t_next);
        let x_n = match distill {
            None => noised(&levels.t_n),
            Some((solver, guidance)) => {
                let (model, params) = self.teacher.as_ref().expect("a distillation run has its teacher");
                let teacher = Teacher { model, params, labels: &labels, guidance };
                ode::step(be, &teacher, solver, &x_next, &levels.t_next, &levels.t_n)
            }
        };

        // L = lambda(t_n) d(f_theta(x + t_{n+1} z, t_{n+1}), stopgrad f_theta_minus(x + t_n z, t_n)).
        let (online, cache) = self.model.forward(be, &self.params, &x_next, &levels.t_next, &labels);
        let (target, _) = self.model.forward(be, &self.target, &x_n, &levels.t_n, &labels);
        let weights: Vec<f64> = levels.weight.iter().map(|&w| w as f64).collect();
        self.backpropagate(be, self.config.distance, &online, &target, &weights, &cache)
    }
}
