//! Consistency training, `consistency-models.md` section 5 (Algorithm 3), with the improved-CT
//! switches of section 6. One call of [`Trainer::step`] records a whole step on the backend:
//! minibatch gather, noise injection, both forward passes, loss, backward, Adam, and both EMA
//! updates. Nothing is read back; the caller reads the returned loss when it wants to.
//!
//! The few per-sample scalars of a step (the noise levels t_n and t_{n+1} and the weights) are
//! drawn on the host from the same Philox stream the GPU would use and uploaded: a few hundred
//! bytes, no round trip.

use std::ops::Range;

use crate::backend::{AdamStep, BTensor, Backend, Metric, RandomKey};
use crate::checkpoint::{self, Checkpoint};
use crate::model::{Cache, Model};
use crate::ode::{self, Solver, Teacher};
use crate::random;
use crate::schedule::{self, CtKind, CtSchedule, IndexChoice, NoiseLevels, Weighting};

/// Pixels of an MNIST digit.
const PIXELS: usize = 28 * 28;

/// Philox streams of one step's independent draws.
const STREAM_BATCH: u32 = 0;
const STREAM_NOISE: u32 = 1;
const STREAM_LEVEL: u32 = 2;
const STREAM_LABEL_DROPOUT: u32 = 3;

/// What a run trains.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Objective {
    /// A consistency model by consistency training (sections 5 and 6).
    Consistency,
    /// The EDM diffusion teacher by denoising score matching (section 4):
    /// `lambda(t) ||D(x + t z, t) - x||^2` with ln t ~ N(-1.2, 1.2^2). Its network is a
    /// [`Model::denoiser`]; the curriculum, weighting and metric of the config are not used.
    Denoising,
    /// A consistency model by consistency distillation from a teacher (section 4, Algorithm
    /// 2): the target point is one `solver` step of the teacher's ODE on the fixed Karras grid
    /// of `n` points, and theta_minus follows theta with the fixed decay `mu`. The run's
    /// checkpoint carries the teacher's weights. A class-conditional teacher may be guided
    /// (classifier-free guidance weight `guidance`, 1: none), so the student learns to draw
    /// the guided teacher's digits in one step.
    Distillation { solver: Solver, n: usize, mu: f64, guidance: f64 },
}

impl Objective {
    /// The network a run of this objective trains, with a label embedding for `classes`
    /// digit classes (0: unconditional).
    pub fn model(self, widths: crate::nn::Widths, classes: usize) -> Model {
        let model = match self {
            Objective::Consistency | Objective::Distillation { .. } => Model::new(widths),
            Objective::Denoising => Model::denoiser(widths),
        };
        model.with_classes(classes)
    }
}

/// Everything that defines a training run besides the network.
#[derive(Clone, Debug, PartialEq)]
pub struct TrainConfig {
    pub objective: Objective,
    pub schedule: CtSchedule,
    pub index_choice: IndexChoice,
    pub weighting: Weighting,
    pub metric: Metric,
    pub batch: usize,
    pub lr: f32,
    /// Final decay of the separate EMA of theta used for sampling. The decay at step k is
    /// min(sampling_ema, (1 + k) / (10 + k)), so early weights are forgotten quickly.
    pub sampling_ema: f32,
    /// Global gradient-norm clip; 0 disables it.
    pub max_grad_norm: f32,
    /// For a class-conditional network: the probability that a training digit's label is
    /// dropped (replaced by "no label"), so the one network also samples unconditionally.
    pub label_dropout: f32,
    pub seed: u64,
}

impl TrainConfig {
    /// Improved consistency training (section 6), the default recipe: pseudo-Huber loss with
    /// c = 0.00054 sqrt(784), lambda = 1/(t_{n+1} - t_n), lognormal n, the exponential curriculum
    /// from 11 to 161 grid points over `total_steps`, and mu = 0. Ending at s1 = 160 rather than
    /// the paper's 1280 suits runs of a few thousand steps (`shared/docs/recipes.md`).
    pub fn improved(total_steps: u32) -> Self {
        TrainConfig {
            schedule: CtSchedule { kind: CtKind::Improved { s0: 10, s1: 160 }, total_steps },
            index_choice: IndexChoice::Lognormal,
            weighting: Weighting::InverseStep,
            metric: Metric::PseudoHuber { c: schedule::pseudo_huber_c(PIXELS) as f32 },
            ..Self::original(total_steps)
        }
    }

    /// The original consistency training (section 5, Algorithm 3): squared L2 loss, uniform n,
    /// N(k) growing from 2 to 151 points over `total_steps`, and the EMA teacher with mu0 = 0.9.
    pub fn original(total_steps: u32) -> Self {
        TrainConfig {
            objective: Objective::Consistency,
            schedule: CtSchedule { kind: CtKind::Original { s0: 2, s1: 150, mu0: 0.9 }, total_steps },
            index_choice: IndexChoice::Uniform,
            weighting: Weighting::Uniform,
            metric: Metric::L2,
            batch: 64,
            lr: 2e-4,
            sampling_ema: 0.999,
            max_grad_norm: 0.0,
            label_dropout: 0.1,
            seed: 0,
        }
    }

    /// The EDM diffusion teacher (section 4): denoising score matching, batch 64, Adam 2e-4,
    /// the sampling EMA as for consistency models. `total_steps` only sizes the run's plan.
    pub fn teacher(total_steps: u32) -> Self {
        TrainConfig { objective: Objective::Denoising, metric: Metric::L2, ..Self::original(total_steps) }
    }

    /// Consistency distillation (Algorithm 2) with the paper's choices: the fixed grid of
    /// `n = 18` points, `mu = 0.95`, lambda = 1, squared L2 (LPIPS, the paper's best, has no
    /// counterpart here yet), one `solver` step of the teacher.
    pub fn distillation(total_steps: u32, solver: Solver) -> Self {
        let objective = Objective::Distillation { solver, n: 18, mu: 0.95, guidance: 1.0 };
        TrainConfig { objective, ..Self::original(total_steps) }
    }

    /// mu(k): the decay of theta_minus at step k.
    pub fn target_ema(&self, k: u32) -> f64 {
        match self.objective {
            Objective::Distillation { mu, .. } => mu,
            _ => self.schedule.target_ema(k),
        }
    }

    /// N(k): the points of the time grid at step k.
    pub fn discretization(&self, k: u32) -> usize {
        match self.objective {
            Objective::Distillation { n, .. } => n,
            _ => self.schedule.discretization(k),
        }
    }

    /// One line for logs and the page: recipe, curriculum, loss, batch, lr, seed.
    pub fn describe(&self) -> String {
        let common = format!("K={} batch={} lr={} seed={}", self.schedule.total_steps, self.batch, self.lr, self.seed);
        match self.objective {
            Objective::Denoising => {
                return format!("EDM teacher (denoising score matching, ln t ~ N(-1.2, 1.2^2)) {common}");
            }
            Objective::Distillation { solver, n, mu, guidance } => {
                let loss = checkpoint::metric_name(self.metric);
                let guided = if guidance == 1.0 { String::new() } else { format!(", guidance {guidance}") };
                return format!(
                    "consistency distillation ({} teacher steps, N={n}, mu={mu}{guided}) loss={loss} {common}",
                    solver.name()
                );
            }
            Objective::Consistency => {}
        }
        let schedule = match self.schedule.kind {
            CtKind::Original { s0, s1, mu0 } => format!("original CT s0={s0} s1={s1} mu0={mu0}"),
            CtKind::Improved { s0, s1 } => format!("improved CT s0={s0} s1={s1}"),
        };
        format!(
            "{schedule} K={} loss={} n~{} weighting={} batch={} lr={} seed={}",
            self.schedule.total_steps,
            checkpoint::metric_name(self.metric),
            checkpoint::index_choice_name(self.index_choice),
            checkpoint::weighting_name(self.weighting),
            self.batch,
            self.lr,
            self.seed
        )
    }

    /// The sampling EMA's decay at step k (see [`TrainConfig::sampling_ema`]).
    pub fn sampling_ema_at(&self, k: u32) -> f32 {
        self.sampling_ema.min((1.0 + k as f32) / (10.0 + k as f32))
    }
}

/// The recipes a person picks between.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecipeKind {
    /// [`TrainConfig::improved`], the default.
    Improved,
    /// [`TrainConfig::original`].
    Original,
    /// [`TrainConfig::teacher`]: the EDM diffusion teacher.
    Teacher,
    /// [`TrainConfig::distillation`] from a teacher, with its ODE solver.
    Distillation { solver: Solver },
}

/// The loss a person can put in place of the recipe's own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LossKind {
    L2,
    L1,
    /// With the section-6 constant c = 0.00054 sqrt(784).
    PseudoHuber,
}

/// A run's knobs as a person sets them (the CLI's flags, the page's controls): a recipe, the
/// length its curriculum is planned for, and optional overrides.
#[derive(Clone, Debug, PartialEq)]
pub struct Recipe {
    pub kind: RecipeKind,
    /// K, the steps the curriculum spans.
    pub total_steps: u32,
    pub loss: Option<LossKind>,
    pub s0: Option<usize>,
    pub s1: Option<usize>,
    /// Override the label dropout of a class-conditional network (default 0.1).
    pub label_dropout: Option<f32>,
    /// Override distillation's fixed grid of N = 18 points.
    pub distill_n: Option<usize>,
    /// Distillation from a class-conditional teacher: its classifier-free guidance weight.
    pub guidance: Option<f64>,
    pub batch: usize,
    pub lr: f32,
    pub seed: u64,
}

impl Recipe {
    /// The full configuration, or a message naming the knob that is out of range.
    pub fn config(&self) -> crate::Result<TrainConfig> {
        let invalid = |m: String| Err(crate::Error::Invalid(m));
        let mut config = match self.kind {
            RecipeKind::Improved => TrainConfig::improved(self.total_steps),
            RecipeKind::Original => TrainConfig::original(self.total_steps),
            RecipeKind::Teacher => TrainConfig::teacher(self.total_steps),
            RecipeKind::Distillation { solver } => TrainConfig::distillation(self.total_steps, solver),
        };
        if self.kind == RecipeKind::Teacher && (self.loss.is_some() || self.s0.is_some() || self.s1.is_some()) {
            return invalid("the teacher's loss is denoising score matching: no loss, s0 or s1 to set".into());
        }
        if matches!(self.kind, RecipeKind::Distillation { .. }) && (self.s0.is_some() || self.s1.is_some()) {
            return invalid("distillation has a fixed grid of N points (set N, default 18): no s0 or s1 to set".into());
        }
        match (self.distill_n, &mut config.objective) {
            (None, _) => {}
            (Some(n), Objective::Distillation { n: grid, .. }) if n >= 2 => *grid = n,
            (Some(n), Objective::Distillation { .. }) => {
                return invalid(format!("the grid needs N >= 2 points, got {n}"))
            }
            (Some(_), _) => return invalid("N of the fixed grid is a distillation setting".into()),
        }
        match (self.guidance, &mut config.objective) {
            (None, _) => {}
            (Some(w), Objective::Distillation { guidance, .. }) if w.is_finite() && w >= 1.0 => *guidance = w,
            (Some(w), Objective::Distillation { .. }) => {
                return invalid(format!("the guidance weight must be at least 1 (1: none), got {w}"))
            }
            (Some(_), _) => return invalid("guidance is a setting of distillation from a conditional teacher".into()),
        }
        match &mut config.schedule.kind {
            CtKind::Original { s0, s1, .. } | CtKind::Improved { s0, s1 } => {
                *s0 = self.s0.unwrap_or(*s0);
                *s1 = self.s1.unwrap_or(*s1);
                if *s0 < 1 || *s1 < *s0 {
                    return invalid(format!("need 1 <= s0 <= s1, got s0 = {s0}, s1 = {s1}"));
                }
            }
        }
        if let Some(loss) = self.loss {
            config.metric = match loss {
                LossKind::L2 => Metric::L2,
                LossKind::L1 => Metric::L1,
                LossKind::PseudoHuber => Metric::PseudoHuber { c: schedule::pseudo_huber_c(PIXELS) as f32 },
            };
        }
        if self.total_steps == 0 {
            return invalid("the curriculum needs at least 1 step (K)".into());
        }
        if self.batch == 0 {
            return invalid("the batch needs at least 1 digit".into());
        }
        if let Some(p) = self.label_dropout {
            if !(0.0..=1.0).contains(&p) {
                return invalid(format!("the label dropout is a probability in [0, 1], got {p}"));
            }
            config.label_dropout = p;
        }
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return invalid(format!("the learning rate must be positive, got {}", self.lr));
        }
        Ok(TrainConfig { batch: self.batch, lr: self.lr, seed: self.seed, ..config })
    }
}

/// The state of a run on one backend: online weights theta, target theta_minus, the sampling
/// EMA, Adam's moments, and the training set on the device.
pub struct Trainer<B: Backend> {
    pub model: Model,
    pub config: TrainConfig,
    pub params: BTensor<B>,
    pub target: BTensor<B>,
    pub ema: BTensor<B>,
    grads: BTensor<B>,
    adam_m: BTensor<B>,
    adam_v: BTensor<B>,
    data: B::Bytes,
    data_count: usize,
    /// The digits' labels, for a class-conditional network (empty otherwise).
    labels: Vec<u8>,
    /// The teacher of consistency distillation: its denoiser and weights.
    teacher: Option<(Model, BTensor<B>)>,
    /// Steps taken so far (k of the schedules).
    pub step: u32,
}

/// The host-side draws of one step: per-sample noise levels and loss weights.
struct Levels {
    t_n: Vec<f64>,
    t_next: Vec<f64>,
    weight: Vec<f32>,
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
            adam_m: be.zeros(&[len]),
            adam_v: be.zeros(&[len]),
            data: be.upload_bytes(images),
            data_count,
            labels: if model.is_conditional() { labels.to_vec() } else { Vec::new() },
            teacher: None,
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
        trainer.adam_m = be.upload(m, &[len]);
        trainer.adam_v = be.upload(v, &[len]);
        trainer.step = checkpoint.step;
        if let Some(teacher) = &checkpoint.teacher {
            trainer = trainer.with_teacher(be, teacher);
        }
        trainer
    }

    /// Gives a distillation run its teacher: the EMA weights of a denoiser of the same widths.
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
            states.iter_mut().zip([&self.params, &self.target, &self.ema, &self.adam_m, &self.adam_v])
        {
            *state = be.read(tensor).await?;
        }
        let teacher = match &self.teacher {
            Some((_, weights)) => Some(be.read(weights).await?),
            None => None,
        };
        let (widths, classes) = (self.model.net.widths, self.model.net.classes);
        Ok(Checkpoint { widths, classes, config: self.config.clone(), step: self.step, states, teacher })
    }

    fn key(&self, stream: u32) -> RandomKey {
        RandomKey { seed: self.config.seed, step: self.step, stream }
    }

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

    /// Section 4's denoising score matching for the EDM teacher: per sample ln t ~ N(-1.2,
    /// 1.2^2) and the loss `lambda(t) mean_pixels (D(x + t z, t) - x)^2`.
    fn denoising_gradients(&mut self, be: &B, rows: Range<usize>) -> BTensor<B> {
        let count = rows.len();
        let key = self.key(STREAM_LEVEL);
        let times: Vec<f64> = (rows.start as u32..rows.end as u32)
            .map(|b| (schedule::P_MEAN_EDM + schedule::P_STD_EDM * random::normal(key, b) as f64).exp())
            .collect();
        let (x, z, labels) = self.data_and_noise(be, rows);
        let ones = be.upload(&vec![1.0; count], &[count]);
        let t = be.upload(&times.iter().map(|&t| t as f32).collect::<Vec<_>>(), &[count]);
        let noisy = be.empty(&[count, 1, 28, 28]);
        be.scale_add(&ones, &x, &t, &z, &noisy);
        let (denoised, cache) = self.model.forward(be, &self.params, &noisy, &times, &labels);
        let weights: Vec<f64> = times.iter().map(|&t| schedule::edm_lambda(t)).collect();
        self.backpropagate(be, Metric::L2, &denoised, &x, &weights, &cache)
    }

    /// The slice's loss `mean_rows weight d(pred, target)` as its share of the batch's mean
    /// loss, and its gradient back through the network (from `pred`, whose forward left `cache`)
    /// into [`Trainer::grads`]. The loss ops average over the rows they see; weights scaled by
    /// rows / batch make that the slice's share of the mean over the whole batch (exactly the
    /// weights themselves for the whole batch).
    fn backpropagate(
        &mut self,
        be: &B,
        metric: Metric,
        pred: &BTensor<B>,
        target: &BTensor<B>,
        weights: &[f64],
        cache: &Cache<B>,
    ) -> BTensor<B> {
        let count = weights.len();
        let share = count as f64 / self.config.batch as f64;
        let weight: Vec<f32> = weights.iter().map(|&w| (w * share) as f32).collect();
        let weight = be.upload(&weight, &[count]);
        let (pred, target) = (pred.reshape(&[count, PIXELS]), target.reshape(&[count, PIXELS]));
        let (per_sample, stats) = (be.empty(&[count]), be.empty(&[count]));
        be.loss(metric, &pred, &target, &weight, &per_sample, &stats);
        let loss = be.empty(&[1]);
        be.sum(&per_sample, &loss, false, 1.0 / count as f32);
        let d_pred = be.empty(&[count, 1, 28, 28]);
        be.loss_backward(metric, &pred, &target, &weight, &stats, &d_pred.reshape(&[count, PIXELS]));
        self.model.backward(be, &self.params, &self.grads, cache, &d_pred);
        loss
    }

    /// Consistency training (Algorithm 3 with the iCT switches) on samples `rows` of the batch,
    /// or, with a teacher's `solver`, consistency distillation (Algorithm 2): the same loss, but
    /// the target network sees one solver step of the teacher's ODE from `x + t_{n+1} z` down to
    /// t_n instead of `x + t_n z`.
    fn consistency_gradients(&mut self, be: &B, rows: Range<usize>, distill: Option<(Solver, f64)>) -> BTensor<B> {
        let count = rows.len();
        let levels = self.draw_levels(self.config.discretization(self.step), rows.clone());

        // x ~ data, z ~ N(0, I), one z shared by both points of the trajectory.
        let (x, z, labels) = self.data_and_noise(be, rows);
        let ones = be.upload(&vec![1.0; count], &[count]);
        let noised = |t: &[f64]| {
            let t = be.upload(&t.iter().map(|&v| v as f32).collect::<Vec<_>>(), &[count]);
            let out = be.empty(&[count, 1, 28, 28]);
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
        self.backpropagate(be, self.config.metric, &online, &target, &weights, &cache)
    }

    /// The gradient [`Trainer::apply`] uses: written by [`Trainer::gradients`], or by the caller
    /// (the sum of the slices' gradients).
    pub fn grads(&self) -> &BTensor<B> {
        &self.grads
    }

    /// Ends the step with the gradient in [`Trainer::grads`]: theta <- Adam;
    /// theta_minus <- mu theta_minus + (1 - mu) theta; the sampling EMA likewise.
    pub fn apply(&mut self, be: &B) {
        let (c, k) = (&self.config, self.step);
        let mu = c.target_ema(k) as f32;
        let grad_sumsq = be.empty(&[1]);
        be.sum(&self.grads, &grad_sumsq, true, 1.0);
        let adam = AdamStep { lr: c.lr, beta1: 0.9, beta2: 0.999, eps: 1e-8, t: k + 1, max_grad_norm: c.max_grad_norm };
        be.adam(&adam, &self.params, &self.grads, &self.adam_m, &self.adam_v, &grad_sumsq);
        be.ema(mu, &self.target, &self.params);
        be.ema(c.sampling_ema_at(k), &self.ema, &self.params);
        self.step += 1;
    }
}
