//! A run's configuration, in one vocabulary: what it trains ([`Objective`]), the full set of
//! knobs ([`TrainConfig`], with the paper's recipes as constructors), and the knobs as a person
//! sets them ([`Recipe`]: a [`RecipeKind`], a [`LossKind`] and overrides), which the CLI and the
//! page turn into a `TrainConfig`. Every enum here is [`Named`]: checkpoints, `cm`'s flags and
//! the page spell its values through one table.

use crate::backend::Metric;
use crate::image::PIXELS;
use crate::model::Model;
use crate::ode::Solver;
use crate::schedule::{self, CtKind, CtSchedule, IndexChoice, Weighting};
use crate::vocabulary::Named;

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
    /// The loss's name ([`LossKind`]'s).
    pub fn name(self) -> &'static str {
        LossKind::of(self).name()
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
    /// Tuning past K (the page trains the shipped run on until paused) stays at its last stage:
    /// each later stage would halve t - r again, down to differences that f32 no longer
    /// resolves (a tiny run continued from K = 540 to 1,350 fell from 22% to 5% legible).
    /// Progressive distillation goes on at one step ([`TrainConfig::student_steps`]).
    pub fn stage(&self, k: u32) -> u32 {
        match self.objective {
            Objective::Progressive { stage_steps, .. } => k / stage_steps,
            Objective::Tuning { stage_steps, .. } => k.min(self.schedule.total_steps.saturating_sub(1)) / stage_steps,
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
            self.index_choice.name(),
            self.weighting.name(),
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

impl LossKind {
    /// The distance this loss measures with.
    pub fn distance(self) -> Distance {
        match self {
            LossKind::L2 => Distance::Pixel(Metric::L2),
            LossKind::L1 => Distance::Pixel(Metric::L1),
            LossKind::PseudoHuber => pseudo_huber(),
            LossKind::Perceptual => Distance::Perceptual,
        }
    }

    /// The loss of a distance (a pseudo-Huber of any c is [`LossKind::PseudoHuber`]).
    pub fn of(distance: Distance) -> LossKind {
        match distance {
            Distance::Pixel(Metric::L2) => LossKind::L2,
            Distance::Pixel(Metric::L1) => LossKind::L1,
            Distance::Pixel(Metric::PseudoHuber { .. }) => LossKind::PseudoHuber,
            Distance::Perceptual => LossKind::Perceptual,
        }
    }
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
            config.distance = loss.distance();
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

// The names, one table per enum. Checkpoint metadata stores them, so a name never changes.

impl Named for Objective {
    const WHAT: &'static str = "objective";
    const NAMES: &'static [(Self, &'static str)] = &[
        (Objective::Consistency, "consistency"),
        (Objective::Denoising, "denoising"),
        (Objective::Distillation { solver: Solver::Heun, n: 18, mu: 0.95, guidance: 1.0 }, "distillation"),
        (Objective::Progressive { teacher_steps: 16, stage_steps: 1 }, "progressive"),
        (Objective::Tuning { q: 2.0, stage_steps: 1 }, "tuning"),
    ];
}

impl Named for RecipeKind {
    const WHAT: &'static str = "recipe";
    const NAMES: &'static [(Self, &'static str)] = &[
        (RecipeKind::Improved, "improved"),
        (RecipeKind::Original, "original"),
        (RecipeKind::Teacher, "teacher"),
        (RecipeKind::Distillation { solver: Solver::Heun }, "distill"),
        (RecipeKind::Progressive, "progressive"),
        (RecipeKind::Tuning, "tuning"),
    ];
}

impl Named for LossKind {
    const WHAT: &'static str = "loss";
    const NAMES: &'static [(Self, &'static str)] = &[
        (LossKind::L2, "l2"),
        (LossKind::L1, "l1"),
        (LossKind::PseudoHuber, "pseudo-huber"),
        (LossKind::Perceptual, "perceptual"),
    ];
}

impl Named for CtKind {
    const WHAT: &'static str = "schedule";
    const NAMES: &'static [(Self, &'static str)] = &[
        (CtKind::Original { s0: 2, s1: 150, mu0: 0.9 }, "original"),
        (CtKind::Improved { s0: 10, s1: 160 }, "improved"),
    ];
}

impl Named for IndexChoice {
    const WHAT: &'static str = "index_choice";
    const NAMES: &'static [(Self, &'static str)] =
        &[(IndexChoice::Uniform, "uniform"), (IndexChoice::Lognormal, "lognormal")];
}

impl Named for Weighting {
    const WHAT: &'static str = "weighting";
    const NAMES: &'static [(Self, &'static str)] =
        &[(Weighting::Uniform, "uniform"), (Weighting::InverseStep, "inverse-step")];
}
