//! The reference U-Net wrapped in a preconditioning: `out(x, t) = c_skip(t) x + c_out(t)
//! F(c_in(t) x, c_noise(t))`. Two choices of coefficients (`docs/paper.md`):
//! - the consistency function of section 2, where `c_skip(eps) = 1` and `c_out(eps) = 0`
//!   exactly, so the boundary condition `f(x, eps) = x` holds exactly, whatever the weights;
//! - the EDM denoiser of section 4 (the diffusion teacher), `D(x, t)`, an estimate of
//!   `E[x_0 | x_t]` whose probability-flow ODE is `dx/dt = (x - D(x, t)) / t`.

use crate::backend::{BTensor, Backend};
use crate::nn::unet::UNetCache;
use crate::nn::{UNet, Widths};
use crate::schedule;

/// Which coefficients wrap the network.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Preconditioning {
    /// Section 2: the consistency function `f_theta`.
    Consistency,
    /// Section 4: the EDM denoiser `D_phi`, trained by denoising score matching.
    Denoiser,
}

impl Preconditioning {
    /// `(c_skip, c_out)` at time t.
    pub fn skip_and_out(self, t: f64) -> (f64, f64) {
        match self {
            Preconditioning::Consistency => (schedule::c_skip(t), schedule::c_out(t)),
            Preconditioning::Denoiser => (schedule::edm_c_skip(t), schedule::edm_c_out(t)),
        }
    }
}

pub struct Model {
    pub net: UNet,
    pub preconditioning: Preconditioning,
}

/// What [`Model::backward`] needs from the forward.
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
    fn new(be: &B, preconditioning: Preconditioning, times: &[f64]) -> Self {
        let n = times.len();
        let tensor = |f: &dyn Fn(f64) -> f64| be.upload(&times.iter().map(|&t| f(t) as f32).collect::<Vec<_>>(), &[n]);
        Coefficients {
            c_skip: tensor(&|t| preconditioning.skip_and_out(t).0),
            c_out: tensor(&|t| preconditioning.skip_and_out(t).1),
            c_in: tensor(&schedule::c_in),
            c_noise: tensor(&schedule::c_noise),
            zero: be.zeros(&[n]),
        }
    }
}

impl Model {
    /// A consistency model (section 2).
    pub fn new(widths: Widths) -> Self {
        Model { net: UNet::new(widths), preconditioning: Preconditioning::Consistency }
    }

    /// An EDM denoiser (section 4): the diffusion teacher.
    pub fn denoiser(widths: Widths) -> Self {
        Model { net: UNet::new(widths), preconditioning: Preconditioning::Denoiser }
    }

    /// The same model with a label embedding for `classes` digit classes (0: unconditional).
    pub fn with_classes(self, classes: usize) -> Self {
        Model { net: UNet::with_classes(self.net.widths, classes), ..self }
    }

    /// Whether the network takes a digit label (section 8's class-conditional models).
    pub fn is_conditional(&self) -> bool {
        self.net.classes > 0
    }

    /// `f(x, t, y)` (or `D(x, t, y)`) for a batch x `[N, 1, H, W]` with one noise level per
    /// sample (`times`, in [eps, T]) and, for a class-conditional network, one label per sample
    /// (`labels`; None or an empty slice: no label). Returns the output and what the backward
    /// needs (drop it when sampling).
    pub fn forward<B: Backend>(
        &self,
        be: &B,
        params: &BTensor<B>,
        x: &BTensor<B>,
        times: &[f64],
        labels: &[Option<u8>],
    ) -> (BTensor<B>, Cache<B>) {
        let n = x.dim(0);
        assert_eq!(times.len(), n, "one noise level per sample");
        assert!(labels.is_empty() || labels.len() == n, "one label per sample, or none");
        assert!(
            self.is_conditional() || labels.iter().all(Option::is_none),
            "an unconditional network takes no labels"
        );
        let c = Coefficients::new(be, self.preconditioning, times);
        let scaled = be.empty(&x.shape);
        be.scale_add(&c.c_in, x, &c.zero, x, &scaled);
        let one_hot = self.is_conditional().then(|| {
            let classes = self.net.classes;
            let mut rows = vec![0.0; n * classes];
            for (i, label) in labels.iter().enumerate() {
                if let Some(y) = *label {
                    assert!((y as usize) < classes, "label {y} of a {classes}-class network");
                    rows[i * classes + y as usize] = 1.0;
                }
            }
            be.upload(&rows, &[n, classes])
        });
        let (f_net, net) = self.net.forward(be, params, &scaled, &c.c_noise, one_hot.as_ref());
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
