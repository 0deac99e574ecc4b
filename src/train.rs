//! Consistency training, `docs/paper.md` section 5 (Algorithm 3), with the improved-CT
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
use crate::perceptual::Perceptual;
use crate::random;
use crate::sample::Sampler;
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
    /// Progressive distillation (section 10) of a denoiser from a teacher of `teacher_steps`
    /// deterministic (DDIM, i.e. Euler) steps: stage s trains a student of `teacher_steps /
    /// 2^(s+1)` steps for `stage_steps` steps, matching two teacher steps with one, then the
    /// student becomes the teacher; the last stage's student samples in one step. Its network
    /// is a [`Model::denoiser`], sampled by the ODE sampler with Euler steps.
    Progressive { teacher_steps: usize, stage_steps: u32 },
    /// Consistency tuning (ECT, section 11) from a diffusion teacher's weights: lognormal t,
    /// the second point r = t (1 - q^-(s+1) (1 + 8 sigmoid(-t))) at stage s = k / stage_steps,
    /// the online network's own stop-gradient output at r as the target (the clean digit where
    /// r <= eps), weighted by 1 / (t - r).
    Tuning { q: f64, stage_steps: u32 },
}

impl Objective {
    /// Whether a run of this objective starts from a diffusion teacher's weights (and so needs
    /// one).
    pub fn needs_teacher(self) -> bool {
        matches!(self, Objective::Distillation { .. } | Objective::Progressive { .. } | Objective::Tuning { .. })
    }

    /// Whether the run keeps a teacher network beside the one it trains (distillation,
    /// progressive distillation); consistency tuning's teacher is the online network itself.
    pub fn keeps_teacher(self) -> bool {
        matches!(self, Objective::Distillation { .. } | Objective::Progressive { .. })
    }
}

/// The sample distance d of a consistency loss (sections 5, 6 and 9).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Distance {
    /// A per-pixel metric (l2, l1, pseudo-Huber): one loss kernel.
    Pixel(Metric),
    /// The LPIPS-style distance on a frozen digit network ([`crate::perceptual`]).
    Perceptual,
}

impl Distance {
    pub fn name(self) -> &'static str {
        match self {
            Distance::Pixel(metric) => checkpoint::metric_name(metric),
            Distance::Perceptual => "perceptual",
        }
    }
}

impl Objective {
    /// The network a run of this objective trains, with a label embedding for `classes`
    /// digit classes (0: unconditional).
    pub fn model(self, widths: crate::nn::Widths, classes: usize) -> Model {
        let model = match self {
            Objective::Consistency | Objective::Distillation { .. } | Objective::Tuning { .. } => Model::new(widths),
            Objective::Denoising | Objective::Progressive { .. } => Model::denoiser(widths),
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
    pub distance: Distance,
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
    /// the paper's 1280 suits runs of a few thousand steps (`docs/results.md#recipes-compared`).
    pub fn improved(total_steps: u32) -> Self {
        TrainConfig {
            schedule: CtSchedule { kind: CtKind::Improved { s0: 10, s1: 160 }, total_steps },
            index_choice: IndexChoice::Lognormal,
            weighting: Weighting::InverseStep,
            distance: pseudo_huber(),
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
            distance: Distance::Pixel(Metric::L2),
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
        TrainConfig { objective: Objective::Denoising, ..Self::original(total_steps) }
    }

    /// Progressive distillation (section 10) from a teacher sampled with 16 Euler steps: four
    /// stages of `total_steps / 4` steps (students of 8, 4, 2 and 1 steps), squared L2 with
    /// the truncated SNR weight, Adam 2e-4.
    pub fn progressive(total_steps: u32) -> Self {
        let objective = Objective::Progressive { teacher_steps: 16, stage_steps: total_steps.div_ceil(4).max(1) };
        TrainConfig { objective, ..Self::original(total_steps) }
    }

    /// Consistency tuning (section 11, `docs/paper.md#consistency-tuning-ect`): q = 2, five stages over
    /// `total_steps`, pseudo-Huber over (t - r); Adam at 2e-4 like every recipe here (an independent
    /// run tuned at 1e-4; 2e-4 is what the comparisons in docs/results.md measured).
    pub fn tuning(total_steps: u32) -> Self {
        let objective = Objective::Tuning { q: 2.0, stage_steps: total_steps.div_ceil(5).max(1) };
        TrainConfig { objective, distance: pseudo_huber(), ..Self::original(total_steps) }
    }

    /// Consistency distillation (Algorithm 2) with the paper's choices: the fixed grid of
    /// `n = 18` points, `mu = 0.95`, lambda = 1, squared L2 (the paper's best, LPIPS, is
    /// [`Distance::Perceptual`] here), one `solver` step of the teacher.
    pub fn distillation(total_steps: u32, solver: Solver) -> Self {
        let objective = Objective::Distillation { solver, n: 18, mu: 0.95, guidance: 1.0 };
        TrainConfig { objective, ..Self::original(total_steps) }
    }

    /// mu(k): the decay of theta_minus at step k.
    pub fn target_ema(&self, k: u32) -> f64 {
        match self.objective {
            Objective::Distillation { mu, .. } => mu,
            Objective::Consistency => self.schedule.target_ema(k),
            // No target network: the teacher is the online network (tuning) or a fixed one.
            Objective::Denoising | Objective::Progressive { .. } | Objective::Tuning { .. } => 0.0,
        }
    }

    /// N(k): the points of the time grid at step k; for progressive distillation the student's
    /// sampling steps, for consistency tuning 0 (it has no grid).
    pub fn discretization(&self, k: u32) -> usize {
        match self.objective {
            Objective::Distillation { n, .. } => n,
            Objective::Progressive { .. } => self.student_steps(k),
            Objective::Tuning { .. } => 0,
            Objective::Consistency | Objective::Denoising => self.schedule.discretization(k),
        }
    }

    /// The stage at step k of progressive distillation or consistency tuning (0 otherwise).
    pub fn stage(&self, k: u32) -> u32 {
        match self.objective {
            Objective::Progressive { stage_steps, .. } | Objective::Tuning { stage_steps, .. } => k / stage_steps,
            _ => 0,
        }
    }

    /// Progressive distillation: the student's sampling steps at step k, teacher_steps /
    /// 2^(stage + 1), at least 1 (training goes on at one step after the last stage).
    pub fn student_steps(&self, k: u32) -> usize {
        match self.objective {
            Objective::Progressive { teacher_steps, .. } => (teacher_steps >> (self.stage(k) + 1).min(31)).max(1),
            _ => 0,
        }
    }

    /// One line for logs and the page: recipe, curriculum, loss, batch, lr, seed.
    pub fn describe(&self) -> String {
        let common = format!("K={} batch={} lr={} seed={}", self.schedule.total_steps, self.batch, self.lr, self.seed);
        match self.objective {
            Objective::Denoising => {
                return format!("EDM teacher (denoising score matching, ln t ~ N(-1.2, 1.2^2)) {common}");
            }
            Objective::Progressive { teacher_steps, stage_steps } => {
                return format!(
                    "progressive distillation (from {teacher_steps} Euler steps, {stage_steps} steps a stage) {common}"
                );
            }
            Objective::Tuning { q, stage_steps } => {
                let loss = self.distance.name();
                return format!("consistency tuning (q={q}, {stage_steps} steps a stage) loss={loss} {common}");
            }
            Objective::Distillation { solver, n, mu, guidance } => {
                let loss = self.distance.name();
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
            self.distance.name(),
            checkpoint::index_choice_name(self.index_choice),
            checkpoint::weighting_name(self.weighting),
            self.batch,
            self.lr,
            self.seed
        )
    }

    /// The sampling EMA's decay at step k (see [`TrainConfig::sampling_ema`]). Progressive
    /// distillation restarts it with every stage, whose student starts afresh.
    pub fn sampling_ema_at(&self, k: u32) -> f32 {
        let k = match self.objective {
            Objective::Progressive { stage_steps, .. } => k % stage_steps,
            _ => k,
        };
        self.sampling_ema.min((1.0 + k as f32) / (10.0 + k as f32))
    }
}

/// Improved CT's pseudo-Huber metric with c = 0.00054 sqrt(784) (section 6).
fn pseudo_huber() -> Distance {
    Distance::Pixel(Metric::PseudoHuber { c: schedule::pseudo_huber_c(PIXELS) as f32 })
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
    /// [`TrainConfig::progressive`] from a teacher.
    Progressive,
    /// [`TrainConfig::tuning`] from a teacher.
    Tuning,
}

/// The loss a person can put in place of the recipe's own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LossKind {
    L2,
    L1,
    /// With the section-6 constant c = 0.00054 sqrt(784).
    PseudoHuber,
    /// The LPIPS-style distance of section 9 ([`Distance::Perceptual`]).
    Perceptual,
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
    /// Adam's learning rate; None: the recipe's own (2e-4).
    pub lr: Option<f32>,
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
            RecipeKind::Progressive => TrainConfig::progressive(self.total_steps),
            RecipeKind::Tuning => TrainConfig::tuning(self.total_steps),
        };
        let grid = self.s0.is_some() || self.s1.is_some();
        if matches!(self.kind, RecipeKind::Teacher | RecipeKind::Progressive) && (self.loss.is_some() || grid) {
            return invalid(format!(
                "the {} loss is a weighted squared error of the denoiser: no loss, s0 or s1 to set",
                if self.kind == RecipeKind::Teacher { "teacher's" } else { "progressive distillation's" }
            ));
        }
        if matches!(self.kind, RecipeKind::Distillation { .. }) && grid {
            return invalid("distillation has a fixed grid of N points (set N, default 18): no s0 or s1 to set".into());
        }
        if self.kind == RecipeKind::Tuning && grid {
            return invalid("consistency tuning has no grid: its gap shrinks by stages, no s0 or s1 to set".into());
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
            config.distance = match loss {
                LossKind::L2 => Distance::Pixel(Metric::L2),
                LossKind::L1 => Distance::Pixel(Metric::L1),
                LossKind::PseudoHuber => pseudo_huber(),
                LossKind::Perceptual => Distance::Perceptual,
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
        let lr = self.lr.unwrap_or(config.lr);
        if !(lr > 0.0 && lr.is_finite()) {
            return invalid(format!("the learning rate must be positive, got {lr}"));
        }
        Ok(TrainConfig { batch: self.batch, lr, seed: self.seed, ..config })
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
        trainer.adam_m = be.upload(m, &[len]);
        trainer.adam_v = be.upload(v, &[len]);
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

    /// The sampler that measures the run's quality after the last step taken (`cm train
    /// --fid-every`): the diffusion teacher and a progressive student sample by Euler steps
    /// (the student's own count; the teacher's 18), a consistency model in one step.
    pub fn quality_sampler(&self) -> crate::Result<Sampler> {
        let steps = match self.config.objective {
            Objective::Progressive { .. } => self.config.student_steps(self.step.saturating_sub(1)),
            _ => 18,
        };
        Sampler::for_model(&self.model, &[], "euler", steps)
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
        self.backpropagate(be, Distance::Pixel(Metric::L2), &denoised, &x, &weights, &cache)
    }

    /// Section 10, one step of a progressive-distillation stage: for a student of M steps, n
    /// uniform in 0..M, t = t_n and s = t_{n+1} on the student's Karras grid of M + 1 points
    /// (descending from T), two Euler (DDIM) steps of the teacher t -> t' -> s on the nested
    /// grid of 2M + 1 points, and the loss `w(t) ||D_student(x_t, t) - x_target||^2` with the
    /// denoiser target that reaches the teacher's point in one step.
    fn progressive_gradients(&mut self, be: &B, rows: Range<usize>) -> BTensor<B> {
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
        let x_t = be.empty(&[count, 1, 28, 28]);
        be.scale_add(&per_sample(be, t.iter().map(|_| 1.0)), &x, &per_sample(be, t.iter().copied()), &z, &x_t);
        let (model, params) = self.teacher.as_ref().expect("a progressive distillation has its teacher");
        let teacher = Teacher { model, params, labels: &labels, guidance: 1.0 };
        let x_mid = ode::step(be, &teacher, Solver::Euler, &x_t, &t, &mid);
        let x_s = ode::step(be, &teacher, Solver::Euler, &x_mid, &mid, &s);
        let (a, b): (Vec<f64>, Vec<f64>) =
            t.iter().zip(&s).map(|(&t, &s)| schedule::pd_target_coefficients(t, s)).unzip();
        let target = be.empty(&[count, 1, 28, 28]);
        be.scale_add(&per_sample(be, a.into_iter()), &x_s, &per_sample(be, b.into_iter()), &x_t, &target);

        let (denoised, cache) = self.model.forward(be, &self.params, &x_t, &t, &labels);
        let weights: Vec<f64> = t.iter().map(|&t| schedule::pd_weight(t)).collect();
        self.backpropagate(be, Distance::Pixel(Metric::L2), &denoised, &target, &weights, &cache)
    }

    /// Section 11, one step of consistency tuning: ln t ~ N(-1.1, 2^2) (clamped to [eps, T]),
    /// r at the current stage, and `d(f(x + t z, t), stopgrad f(x + r z, r)) / (t - r)` with the
    /// online weights on both sides; where r <= eps the target is the clean digit x itself
    /// (f(x, eps) = x exactly, so the same forward gives it).
    fn tuning_gradients(&mut self, be: &B, rows: Range<usize>, q: f64) -> BTensor<B> {
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
        let x_t = be.empty(&[count, 1, 28, 28]);
        be.scale_add(&ones, &x, &per_sample(be, t.iter().copied()), &z, &x_t);
        let x_r = be.empty(&[count, 1, 28, 28]);
        be.scale_add(&ones, &x, &per_sample(be, r_noise.into_iter()), &z, &x_r);

        let (online, cache) = self.model.forward(be, &self.params, &x_t, &t, &labels);
        let (target, _) = self.model.forward(be, &self.params, &x_r, &r_time, &labels);
        // t = eps (a clamped draw) has r < eps too; its loss has no gradient (c_out(eps) = 0),
        // and the weight is kept finite.
        let weights: Vec<f64> = t.iter().zip(&r).map(|(&t, &r)| 1.0 / (t - r).max(1e-6)).collect();
        self.backpropagate(be, self.config.distance, &online, &target, &weights, &cache)
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
                let d_pred = be.empty(&[count, 1, 28, 28]);
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
        self.backpropagate(be, self.config.distance, &online, &target, &weights, &cache)
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
        let grad_sumsq = be.empty(&[1]);
        be.sum(&self.grads, &grad_sumsq, true, 1.0);
        let adam = AdamStep { lr: c.lr, beta1: 0.9, beta2: 0.999, eps: 1e-8, t: k + 1, max_grad_norm: c.max_grad_norm };
        be.adam(&adam, &self.params, &self.grads, &self.adam_m, &self.adam_v, &grad_sumsq);
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
