//! The consistency function of `consistency-models.md`, section 2:
//! `f(x, t) = c_skip(t) x + c_out(t) F(c_in(t) x, c_noise(t))`, with F the reference U-Net.
//! `c_skip(eps) = 1` and `c_out(eps) = 0` exactly, so the boundary condition `f(x, eps) = x`
//! holds exactly, whatever the weights.

use crate::backend::{BTensor, Backend};
use crate::nn::unet::UNetCache;
use crate::nn::{UNet, Widths};
use crate::schedule;

pub struct ConsistencyModel {
    pub net: UNet,
}

/// What [`ConsistencyModel::backward`] needs from the forward.
pub struct Cache<B: Backend> {
    c_out: BTensor<B>,
    net: UNetCache<B>,
}

/// Per-sample coefficients of the parameterization at noise levels `times`, as f32 tensors.
struct Coefficients<B: Backend> {
    c_skip: BTensor<B>,
    c_out: BTensor<B>,
    c_in: BTensor<B>,
    c_noise: BTensor<B>,
    zero: BTensor<B>,
}

impl<B: Backend> Coefficients<B> {
    fn new(be: &B, times: &[f64]) -> Self {
        let n = times.len();
        let tensor = |f: fn(f64) -> f64| be.upload(&times.iter().map(|&t| f(t) as f32).collect::<Vec<_>>(), &[n]);
        Coefficients {
            c_skip: tensor(schedule::c_skip),
            c_out: tensor(schedule::c_out),
            c_in: tensor(schedule::c_in),
            c_noise: tensor(schedule::c_noise),
            zero: be.zeros(&[n]),
        }
    }
}

impl ConsistencyModel {
    pub fn new(widths: Widths) -> Self {
        ConsistencyModel { net: UNet::new(widths) }
    }

    /// `f(x, t)` for a batch x `[N, 1, H, W]` with one noise level per sample (`times`, in
    /// [eps, T]). Returns the output and what the backward needs (drop it when sampling).
    pub fn forward<B: Backend>(
        &self,
        be: &B,
        params: &BTensor<B>,
        x: &BTensor<B>,
        times: &[f64],
    ) -> (BTensor<B>, Cache<B>) {
        assert_eq!(times.len(), x.dim(0), "one noise level per sample");
        let c = Coefficients::new(be, times);
        let scaled = be.empty(&x.shape);
        be.scale_add(&c.c_in, x, &c.zero, x, &scaled);
        let (f_net, net) = self.net.forward(be, params, &scaled, &c.c_noise);
        let out = be.empty(&x.shape);
        be.scale_add(&c.c_skip, x, &c.c_out, &f_net, &out);
        (out, Cache { c_out: c.c_out, net })
    }

    /// Writes the parameter gradients into `grads` given the gradient of the output. (x is data
    /// or noise: no gradient flows to it.)
    pub fn backward<B: Backend>(
        &self,
        be: &B,
        params: &BTensor<B>,
        grads: &BTensor<B>,
        cache: &Cache<B>,
        d_out: &BTensor<B>,
    ) {
        let zero = be.zeros(&[d_out.dim(0)]);
        let d_net = be.empty(&d_out.shape);
        be.scale_add(&cache.c_out, d_out, &zero, d_out, &d_net);
        self.net.backward(be, params, grads, &cache.net, &d_net);
    }
}
