//! Adam with a global gradient-norm clip, the one optimizer step of every training loop here
//! (the consistency models' trainer and the classifier's).

use crate::backend::{AdamStep, BTensor, Backend};

/// Adam's two moments for the weights of one layout, on the device.
pub struct Adam<B: Backend> {
    pub m: BTensor<B>,
    pub v: BTensor<B>,
}

impl<B: Backend> Adam<B> {
    /// Moments at zero, for weights of `len` values.
    pub fn new(be: &B, len: usize) -> Self {
        Adam { m: be.zeros(&[len]), v: be.zeros(&[len]) }
    }

    /// Records step `t` (counted from 1) of `params` along `grads`: beta1 = 0.9, beta2 = 0.999,
    /// eps = 1e-8, and the gradient scaled down to the norm `max_grad_norm` when it is longer
    /// (0: no clip).
    pub fn step(&self, be: &B, params: &BTensor<B>, grads: &BTensor<B>, lr: f32, t: u32, max_grad_norm: f32) {
        let grad_sumsq = be.empty(&[1]);
        be.sum(grads, &grad_sumsq, true, 1.0);
        let step = AdamStep { lr, beta1: 0.9, beta2: 0.999, eps: 1e-8, t, max_grad_norm };
        be.adam(&step, params, grads, &self.m, &self.v, &grad_sumsq);
    }
}
