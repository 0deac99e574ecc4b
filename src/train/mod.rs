//! Consistency training, `docs/paper.md` section 5 (Algorithm 3), with the improved-CT
//! switches of section 6. One call of [`Trainer::step`] records a whole step on the backend:
//! minibatch gather, noise injection, both forward passes, loss, backward, Adam, and both EMA
//! updates. Nothing is read back; the caller reads the returned loss when it wants to.
//!
//! The few per-sample scalars of a step (the noise levels t_n and t_{n+1} and the weights) are
//! drawn on the host from the same Philox stream the GPU would use and uploaded: a few hundred
//! bytes, no round trip.
//!
//! This file holds the trainer's state, the data and noise of a step, the loss and its
//! backward, and the optimizer step; each objective's gradient has its own file:
//! `consistency.rs` (consistency training and distillation), `denoising.rs` (the diffusion
//! teacher), `progressive.rs` (progressive distillation) and `tuning.rs` (consistency tuning).
//!
//! [`classifier`] trains the MNIST classifier that evaluation and the perceptual distance use.

pub mod classifier;
mod consistency;
mod denoising;
mod progressive;
mod tuning;

use std::ops::Range;

use crate::backend::{BTensor, Backend, RandomKey};
use crate::checkpoint::Checkpoint;
use crate::image::{digit_shape, PIXELS};
use crate::model::{Cache, Model};
use crate::nn::Adam;
use crate::ode::Solver;
use crate::perceptual::Perceptual;
use crate::random;
use crate::recipe::{Distance, Objective, TrainConfig};
use crate::sample::Sampler;
use crate::vocabulary::Named;

/// Philox streams of one step's independent draws.
const STREAM_BATCH: u32 = 0;
const STREAM_NOISE: u32 = 1;
const STREAM_LEVEL: u32 = 2;
const STREAM_LABEL_DROPOUT: u32 = 3;

/// The state of a run on one backend: online weights theta, target theta_minus, the sampling
/// EMA, Adam's moments, and the training set on the device.
pub struct Trainer<B: Backend> {
    pub model: Model,
    pub config: TrainConfig,
    pub params: BTensor<B>,
    pub target: BTensor<B>,
    pub ema: BTensor<B>,
    grads: BTensor<B>,
    adam: Adam<B>,
    data: B::Bytes,
    data_count: usize,
    /// The digits' labels, for a class-conditional network (empty otherwise).
    labels: Vec<u8>,
    /// The teacher of consistency or progressive distillation: its denoiser and weights.
    teacher: Option<(Model, BTensor<B>)>,
    /// The perceptual distance's network, for a run that uses it.
    perceptual: Option<Perceptual<B>>,
    /// Steps taken so far (k of the schedules).
    pub step: u32,
}

/// One value per sample, on the device.
fn per_sample<B: Backend>(be: &B, values: impl Iterator<Item = f64>) -> BTensor<B> {
    let values: Vec<f32> = values.map(|v| v as f32).collect();
    be.upload(&values, &[values.len()])
}

impl<B: Backend> Trainer<B> {
    /// A new run from initial weights `init` (the layout of `model.net`) on `images`, a u8
    /// dataset of 28x28 digits one after another, and their `labels` (used by a
    /// class-conditional network; an unconditional one accepts an empty slice).
    pub fn new(be: &B, model: Model, config: TrainConfig, init: &[f32], images: &[u8], labels: &[u8]) -> Self {
        let len = model.net.layout.len;
        assert_eq!(init.len(), len, "initial weights do not match the network");
        assert!(!images.is_empty() && images.len().is_multiple_of(PIXELS), "images must be whole 28x28 digits");
        let data_count = images.len() / PIXELS;
        if model.is_conditional() {
            assert_eq!(labels.len(), data_count, "a class-conditional network needs a label per digit");
            assert!(labels.iter().all(|&y| (y as usize) < model.net.classes), "labels must be classes of the network");
        }
        // theta_minus = theta and the sampling EMA start at the initial weights (Algorithm 3).
        let params = be.upload(init, &[len]);
        Trainer {
            target: be.upload(init, &[len]),
            ema: be.upload(init, &[len]),
            grads: be.zeros(&[len]),
            adam: Adam::new(be, len),
            data: be.upload_bytes(images),
            data_count,
            labels: if model.is_conditional() { labels.to_vec() } else { Vec::new() },
            teacher: None,
            perceptual: (config.distance == Distance::Perceptual)
                .then(|| Perceptual::shipped(be).expect("the shipped perceptual network loads")),
            params,
            model,
            config,
            step: 0,
        }
    }

    /// Continues the run saved in `checkpoint` on `images`. The rest of the run is exactly the
    /// one the saved run would have taken (every draw is keyed by seed, step and stream).
    pub fn resume(be: &B, checkpoint: &Checkpoint, images: &[u8], labels: &[u8]) -> Self {
        let model = checkpoint.model();
        let [online, target, ema, m, v] = &checkpoint.states;
        let mut trainer = Trainer::new(be, model, checkpoint.config.clone(), online, images, labels);
        let len = online.len();
        trainer.target = be.upload(target, &[len]);
        trainer.ema = be.upload(ema, &[len]);
        trainer.adam = Adam { m: be.upload(m, &[len]), v: be.upload(v, &[len]) };
        trainer.step = checkpoint.step;
        if let Some(teacher) = &checkpoint.teacher {
            trainer = trainer.with_teacher(be, teacher);
        }
        trainer
    }

    /// Gives a distillation run its teacher: the weights of a denoiser of the same widths.
    pub fn with_teacher(mut self, be: &B, weights: &[f32]) -> Self {
        assert_eq!(weights.len(), self.model.net.layout.len, "the teacher's weights do not match the network");
        let teacher = Model::denoiser(self.model.net.widths).with_classes(self.model.net.classes);
        self.teacher = Some((teacher, be.upload(weights, &[weights.len()])));
        self
    }

    /// The run's whole state, read back to the host.
    pub async fn checkpoint(&self, be: &B) -> crate::Result<Checkpoint> {
        let mut states: [Vec<f32>; 5] = Default::default();
        for (state, tensor) in
            states.iter_mut().zip([&self.params, &self.target, &self.ema, &self.adam.m, &self.adam.v])
        {
            *state = be.read(tensor).await?;
        }
        let teacher = match &self.teacher {
            Some((_, weights)) => Some(be.read(weights).await?),
            None => None,
        };
        let (widths, classes) = (self.model.net.widths, self.model.net.classes);
        let readouts = Vec::new();
        Ok(Checkpoint { widths, classes, config: self.config.clone(), step: self.step, states, teacher, readouts })
    }

    fn key(&self, stream: u32) -> RandomKey {
        RandomKey { seed: self.config.seed, step: self.step, stream }
    }

    /// Takes `steps` steps in one recording and reads back their mean loss: the one round trip
    /// of a chunk of training. A non-finite mean is an error; the caller decides what to keep.
    pub async fn run(&mut self, be: &B, steps: u32) -> crate::Result<f32> {
        let mut sum = be.zeros(&[1]);
        for _ in 0..steps {
            let loss = self.step(be);
            let total = be.empty(&[1]);
            be.add(&sum, &loss, &total);
            sum = total;
        }
        let mean = be.read(&sum).await?[0] / steps.max(1) as f32;
        if !mean.is_finite() {
            return Err(crate::Error::Invalid(format!("the loss became {mean} before step {}", self.step)));
        }
        Ok(mean)
    }

    /// The sampler that measures the run's quality after the last step taken (`cm train
    /// --fid-every`): the diffusion teacher and a progressive student sample by Euler steps
    /// (the student's own count; the teacher's 18), a consistency model in one step.
    pub fn quality_sampler(&self) -> crate::Result<Sampler> {
        let steps = match self.config.objective {
            Objective::Progressive { .. } => self.config.student_steps(self.step.saturating_sub(1)),
            _ => 18,
        };
        Sampler::for_model(&self.model, &[], Solver::Euler.name(), steps)
    }

    /// Records one training step and returns the batch's mean loss (a one-element tensor).
    pub fn step(&mut self, be: &B) -> BTensor<B> {
        let loss = self.gradients(be, 0..self.config.batch);
        self.apply(be);
        loss
    }

    /// The gradient of the step's loss restricted to samples `rows` of the batch, into
    /// [`Trainer::grads`], and their share of the batch's mean loss (a one-element tensor).
    /// Every draw is the one the whole batch makes at those rows, and the loss is divided by
    /// the whole batch's size, so the gradients of disjoint slices add up to the batch's
    /// gradient: this is how the page's CPU workers split a step (data parallelism).
    pub fn gradients(&mut self, be: &B, rows: Range<usize>) -> BTensor<B> {
        let batch = self.config.batch;
        assert!(rows.start < rows.end && rows.end <= batch, "rows {rows:?} of a batch of {batch}");
        match self.config.objective {
            Objective::Consistency => self.consistency_gradients(be, rows, None),
            Objective::Denoising => self.denoising_gradients(be, rows),
            Objective::Distillation { solver, guidance, .. } => {
                self.consistency_gradients(be, rows, Some((solver, guidance)))
            }
            Objective::Progressive { .. } => self.progressive_gradients(be, rows),
            Objective::Tuning { q, .. } => self.tuning_gradients(be, rows, q),
        }
    }

    /// The data and noise of samples `rows` of the step's batch: x ~ data, z ~ N(0, I), and
    /// for a class-conditional network each digit's label, dropped (None) with probability
    /// `label_dropout`. The draws are made for the batch up to the last row and the slice's
    /// rows kept (a few kB of random numbers, against a network evaluation per row).
    fn data_and_noise(&self, be: &B, rows: Range<usize>) -> (BTensor<B>, BTensor<B>, Vec<Option<u8>>) {
        let count = rows.len();
        let index = be.empty(&[rows.end]);
        be.random_index(self.key(STREAM_BATCH), self.data_count as u32, &index);
        let x = be.empty(&[count, PIXELS]);
        be.gather_rows(&self.data, PIXELS, &be.rows(&index, rows.clone()), &x);
        let z = be.empty(&[rows.end, PIXELS]);
        be.random_normal(self.key(STREAM_NOISE), &z);
        // The host draws the same batch indices as the device (one Philox stream), so it knows
        // the labels without a read-back.
        let labels = if self.labels.is_empty() {
            Vec::new()
        } else {
            let (batch, dropout) = (self.key(STREAM_BATCH), self.key(STREAM_LABEL_DROPOUT));
            (rows.start as u32..rows.end as u32)
                .map(|b| {
                    let digit = self.labels[random::index_below(batch, b, self.data_count as u32) as usize];
                    (random::uniform(dropout, b) >= self.config.label_dropout).then_some(digit)
                })
                .collect()
        };
        (x, be.rows(&z, rows), labels)
    }

    /// The slice's loss `mean_rows weight d(pred, target)` as its share of the batch's mean
    /// loss, and its gradient back through the network (from `pred`, whose forward left `cache`)
    /// into [`Trainer::grads`]. The loss ops average over the rows they see; weights scaled by
    /// rows / batch make that the slice's share of the mean over the whole batch (exactly the
    /// weights themselves for the whole batch).
    fn backpropagate(
        &mut self,
        be: &B,
        distance: Distance,
        pred: &BTensor<B>,
        target: &BTensor<B>,
        weights: &[f64],
        cache: &Cache<B>,
    ) -> BTensor<B> {
        let count = weights.len();
        let share = count as f64 / self.config.batch as f64;
        let weight: Vec<f32> = weights.iter().map(|&w| (w * share) as f32).collect();
        let (per_sample, d_pred) = match distance {
            Distance::Pixel(metric) => {
                let weight = be.upload(&weight, &[count]);
                let (pred, target) = (pred.reshape(&[count, PIXELS]), target.reshape(&[count, PIXELS]));
                let (per_sample, stats) = (be.empty(&[count]), be.empty(&[count]));
                be.loss(metric, &pred, &target, &weight, &per_sample, &stats);
                let d_pred = be.empty(&digit_shape(count));
                be.loss_backward(metric, &pred, &target, &weight, &stats, &d_pred.reshape(&[count, PIXELS]));
                (per_sample, d_pred)
            }
            Distance::Perceptual => {
                let perceptual = self.perceptual.as_ref().expect("a perceptual run has its network");
                let (per_sample, cache) = perceptual.distance(be, pred, target, &weight);
                (per_sample, perceptual.backward(be, &cache))
            }
        };
        let loss = be.empty(&[1]);
        be.sum(&per_sample, &loss, false, 1.0 / count as f32);
        self.model.backward(be, &self.params, &self.grads, cache, &d_pred);
        loss
    }

    /// The gradient [`Trainer::apply`] uses: written by [`Trainer::gradients`], or by the caller
    /// (the sum of the slices' gradients).
    pub fn grads(&self) -> &BTensor<B> {
        &self.grads
    }

    /// Ends the step with the gradient in [`Trainer::grads`]: theta <- Adam;
    /// theta_minus <- mu theta_minus + (1 - mu) theta; the sampling EMA likewise. At the end of
    /// a progressive-distillation stage the student becomes the next stage's teacher and the
    /// start of its student.
    pub fn apply(&mut self, be: &B) {
        let (c, k) = (&self.config, self.step);
        let mu = c.target_ema(k) as f32;
        self.adam.step(be, &self.params, &self.grads, c.lr, k + 1, c.max_grad_norm);
        be.ema(mu, &self.target, &self.params);
        be.ema(c.sampling_ema_at(k), &self.ema, &self.params);
        self.step += 1;
        if let Objective::Progressive { stage_steps, .. } = self.config.objective {
            let next = self.step;
            // The stage that just ended trained a student of more than one step.
            if next.is_multiple_of(stage_steps) && self.config.student_steps(next - 1) > 1 {
                let (_, teacher) = self.teacher.as_ref().expect("a progressive distillation has its teacher");
                // The stage's sampling EMA is its best student.
                be.copy(&self.ema, teacher);
                be.copy(&self.ema, &self.params);
                be.copy(&self.ema, &self.target);
            }
        }
    }
}
