//! A run held on one backend, as an application uses it: the last good state (a checkpoint),
//! the live trainer while training, sampling and the views with the EMA weights, the edits of
//! section 7, the classifier's reading of digits, and the bytes of the run for saving.
//!
//! The page's engine (`crate::web`) is a thin binding over a [`Session`]; `tests/session.rs`
//! drives the same code natively on the CPU backend. The types the page sends and receives
//! ([`Settings`], [`SampleOptions`], [`Status`]) convert to and from JS values on wasm32, where
//! serde is a dependency; natively they are plain structs.

mod edits;

use std::ops::{Range, RangeInclusive};

use crate::backend::{BTensor, Backend};
use crate::checkpoint::Checkpoint;
use crate::data::mnist::{Mnist, CLASSES};
use crate::eval::classifier::to_model_range;
use crate::eval::readout::{Reading, Readout};
use crate::eval::Evaluator;
use crate::model::{Model, Preconditioning};
use crate::nn::Widths;
use crate::recipe::{LossKind, Objective, Recipe, RecipeKind, TrainConfig};
use crate::sample::Sampler;
use crate::train::Trainer;
use crate::vocabulary::Named;
use crate::{image, views, Error, Result};

/// Algorithm 1's refinement times after the first step from T, for each number of steps the
/// page offers (descending, in (eps, T)); `cm eval` measures the first two.
pub const TIME_POINTS: &[(usize, &[f64])] = &[(1, &[]), (2, &[0.8]), (4, &[8.0, 2.0, 0.5])];

/// Points of the schedule view's N(k) and mu(k) curves over K.
const SCHEDULE_POINTS: usize = 60;

/// The noise strip's number of times, at least and at most.
const STRIP_TIMES: RangeInclusive<usize> = 2..=32;

/// A new run's knobs as the page's Train panel gives them (see [`Recipe`]).
#[derive(Clone, Debug)]
#[cfg_attr(target_arch = "wasm32", derive(serde::Deserialize), serde(rename_all = "camelCase"))]
pub struct Settings {
    /// "tiny", "small", "base" or "C0,C1,C2".
    pub widths: String,
    /// "improved" or "original"; "teacher" (an EDM diffusion teacher, denoising score
    /// matching); or, from the loaded run's diffusion teacher (a teacher run, or a distilled
    /// run, which carries its teacher), "distill", "progressive" or "tuning".
    pub recipe: String,
    /// "l2", "l1", "pseudo-huber", "perceptual", or absent for the recipe's own.
    pub loss: Option<String>,
    pub total_steps: u32,
    pub batch: usize,
    pub lr: f32,
    pub seed: u64,
    /// A class-conditional network (section 8), which samples a chosen digit.
    #[cfg_attr(target_arch = "wasm32", serde(default))]
    pub conditional: bool,
}

impl Settings {
    fn recipe(&self) -> Result<Recipe> {
        // A distillation on the page takes its teacher's Heun steps (the table's default).
        let kind = RecipeKind::parse(&self.recipe)?;
        let loss = match self.loss.as_deref() {
            None | Some("") => None,
            Some(name) => Some(LossKind::parse(name)?),
        };
        Ok(Recipe {
            kind,
            total_steps: self.total_steps,
            loss,
            s0: None,
            s1: None,
            label_dropout: None,
            distill_n: None,
            guidance: None,
            batch: self.batch,
            lr: Some(self.lr),
            seed: self.seed,
        })
    }
}

/// How digits are asked for (see [`Session::sample`]); the default is one step, any digit.
#[derive(Clone, Debug, Default)]
#[cfg_attr(target_arch = "wasm32", derive(serde::Deserialize), serde(rename_all = "camelCase"))]
pub struct SampleOptions {
    /// Refinement times after the first step (Algorithm 1), descending in (eps, T).
    #[cfg_attr(target_arch = "wasm32", serde(default))]
    pub time_points: Vec<f64>,
    /// The digit, for a class-conditional model; absent: any digit.
    pub digit: Option<u8>,
    /// Sample the run's diffusion teacher instead, by its ODE.
    pub teacher: Option<TeacherSampling>,
}

#[derive(Clone, Debug)]
#[cfg_attr(target_arch = "wasm32", derive(serde::Deserialize))]
pub struct TeacherSampling {
    /// "heun" or "euler".
    pub solver: String,
    pub steps: usize,
}

/// Where the run stands, for the page's read-outs.
#[derive(Clone, Debug)]
#[cfg_attr(target_arch = "wasm32", derive(serde::Serialize), serde(rename_all = "camelCase"))]
pub struct Status {
    pub backend: String,
    /// The [`Objective`]'s name: "consistency", "denoising" (a diffusion teacher),
    /// "distillation", "progressive" or "tuning".
    pub objective: &'static str,
    /// Digit classes of a class-conditional network, 0 for an unconditional one.
    pub classes: usize,
    /// Whether the run has a diffusion teacher to compare with (a teacher run itself, or a
    /// distillation run, which carries its teacher).
    pub has_teacher: bool,
    /// The classifier-free guidance weight of a distillation's teacher (1: none).
    pub guidance: f64,
    pub step: u32,
    pub total_steps: u32,
    pub widths: [usize; 3],
    pub parameters: usize,
    pub recipe: String,
    pub loss: &'static str,
    pub batch: usize,
    /// N(k): grid points of the current discretization.
    pub discretization: usize,
    /// mu(k): the target network's EMA decay.
    pub mu: f64,
    /// Whether MNIST is loaded (training needs it).
    pub has_data: bool,
}

/// A run on one backend: the last good state on the host, and, while training, the trainer
/// that holds the live state on the device.
pub struct Session<B: Backend> {
    be: B,
    /// The run as last loaded, started or read back: what a failure falls back to.
    saved: Checkpoint,
    model: Model,
    /// `saved`'s EMA weights on the device, for sampling when no trainer is live.
    weights: Option<BTensor<B>>,
    trainer: Option<Trainer<B>>,
    /// A distillation run's teacher on the device, uploaded when first sampled.
    teacher: Option<(Model, BTensor<B>)>,
    /// MNIST's training digits (u8, 28x28 each) and their labels.
    data: Option<Mnist>,
    /// The classifier, parsed and uploaded at its first use and kept: reading digits is asked
    /// for after every batch the page samples.
    evaluator: Option<Evaluator<B>>,
}

impl<B: Backend> Session<B> {
    pub fn new(be: B, saved: Checkpoint) -> Self {
        Session {
            model: saved.model(),
            be,
            saved,
            weights: None,
            trainer: None,
            teacher: None,
            data: None,
            evaluator: None,
        }
    }

    pub fn backend(&self) -> &B {
        &self.be
    }

    /// Replaces the run (a loaded file or a fresh start); the training digits stay.
    pub fn load(&mut self, saved: Checkpoint) {
        self.model = saved.model();
        self.saved = saved;
        self.weights = None;
        self.trainer = None;
        self.teacher = None;
    }

    /// Starts a new run at step 0 from `settings`; a recipe that starts from a diffusion teacher
    /// starts from the loaded run's, whose widths and classes the new run takes. On an error
    /// nothing changes.
    pub fn restart(&mut self, settings: &Settings) -> Result<()> {
        let widths = Widths::parse(&settings.widths)?;
        let config = settings.recipe()?.config()?;
        let start = if config.objective.needs_teacher() {
            Checkpoint::from_teacher(&self.teacher_checkpoint()?, config)?
        } else {
            Checkpoint::start(widths, if settings.conditional { CLASSES } else { 0 }, config)
        };
        self.load(start);
        Ok(())
    }

    /// Gives the session the training digits; returns how many.
    pub fn set_training_data(&mut self, data: Mnist) -> usize {
        let count = data.count;
        self.data = Some(data);
        count
    }

    /// The live trainer's recipe and step, else the last good state's.
    fn config_and_step(&self) -> (&TrainConfig, u32) {
        match &self.trainer {
            Some(t) => (&t.config, t.step),
            None => (&self.saved.config, self.saved.step),
        }
    }

    pub fn status(&self) -> Status {
        let (config, step) = self.config_and_step();
        Status {
            backend: self.be.name(),
            objective: config.objective.name(),
            classes: self.model.net.classes,
            has_teacher: self.saved.teacher.is_some() || self.model.preconditioning == Preconditioning::Denoiser,
            guidance: match config.objective {
                Objective::Distillation { guidance, .. } => guidance,
                _ => 1.0,
            },
            step,
            total_steps: config.schedule.total_steps,
            widths: self.saved.widths.0,
            parameters: self.model.net.layout.count(),
            recipe: config.describe(),
            loss: config.distance.name(),
            batch: config.batch,
            discretization: config.discretization(step),
            mu: config.target_ema(step),
            has_data: self.data.is_some(),
        }
    }

    /// The running recipe's schedule: the Karras grid at the current step, N(k) and mu(k)
    /// over K.
    pub fn schedule(&self) -> views::ScheduleView {
        let (config, step) = self.config_and_step();
        views::schedule(config, step, SCHEDULE_POINTS)
    }

    /// The diffusion teacher of the loaded run as a teacher checkpoint: the run itself if it is
    /// one, or the teacher a distilled run carries.
    fn teacher_checkpoint(&self) -> Result<Checkpoint> {
        self.saved.diffusion_teacher().ok_or_else(|| {
            Error::Invalid(
                "this recipe starts from a diffusion teacher: load a teacher run or the distilled model first".into(),
            )
        })
    }

    fn data(&self) -> Result<&Mnist> {
        self.data.as_ref().ok_or_else(|| Error::Invalid("MNIST is not loaded yet".into()))
    }

    /// The consistency property, seen ([`views::trajectory`]): training digit `index` noised to
    /// `count` times from eps to T (clamped to 2..=32) with one noise draw of `seed`, and f of
    /// each. Returns the times and the gray levels of the noised digits followed by the mapped
    /// ones.
    pub async fn trajectory(&mut self, index: usize, seed: u64, count: usize) -> Result<(Vec<f64>, Vec<u8>)> {
        let times = views::strip_times(count.clamp(*STRIP_TIMES.start(), *STRIP_TIMES.end()));
        let data = self.data()?;
        let i = index % data.count;
        let x0 = to_model_range(data.image(i));
        let params = self.sampling_weights().clone();
        let (shown, mapped) = views::trajectory(&self.be, &self.model, &params, &x0, &times, seed);
        let mut gray = image::to_gray(&self.be.read(&shown).await?);
        gray.extend(image::to_gray(&self.be.read(&mapped).await?));
        Ok((times, gray))
    }

    /// Multistep sampling frame by frame ([`views::multistep_trace`]): captions and gray levels
    /// (a frame of `count` digits per caption).
    pub async fn multistep(
        &mut self,
        count: usize,
        seed: u64,
        options: &SampleOptions,
    ) -> Result<(Vec<String>, Vec<u8>)> {
        if self.model.preconditioning != Preconditioning::Consistency {
            return Err(Error::Invalid("step-by-step multistep sampling is for a consistency model".into()));
        }
        let params = self.sampling_weights().clone();
        let frames =
            views::multistep_trace(&self.be, &self.model, &params, count, &options.time_points, seed, options.digit)?;
        let (mut captions, mut gray) = (Vec::new(), Vec::new());
        for (caption, x) in frames {
            captions.push(caption);
            gray.extend(image::to_gray(&self.be.read(&x).await?));
        }
        Ok((captions, gray))
    }

    /// Starts the live trainer from the last good state, unless it is running already.
    fn start_trainer(&mut self) -> Result<()> {
        if self.trainer.is_none() {
            let data = self.data()?;
            self.trainer = Some(Trainer::resume(&self.be, &self.saved, &data.images, &data.labels));
        }
        Ok(())
    }

    /// Drops the live state after a failure; the message says where the run is back at.
    fn fall_back(&mut self, e: impl std::fmt::Display) -> Error {
        self.trainer = None;
        self.weights = None;
        Error::Invalid(format!(
            "{e}. Training stopped; the weights are back at step {}, the last good state.",
            self.saved.step
        ))
    }

    /// `steps` more steps; resolves to their mean loss. On any failure (a non-finite loss, a
    /// lost device) the live state is dropped and the run is back at its last good state,
    /// which the message names.
    pub async fn train(&mut self, steps: u32) -> Result<f32> {
        self.start_trainer()?;
        let trainer = self.trainer.as_mut().expect("started");
        match trainer.run(&self.be, steps).await {
            Ok(loss) => Ok(loss),
            Err(e) => Err(self.fall_back(e)),
        }
    }

    /// The first half of a data-parallel step (the page's CPU workers): samples `rows` of the
    /// batch give their share of the mean loss and their gradient, to be summed over slices.
    pub async fn gradients(&mut self, rows: Range<usize>) -> Result<(f32, Vec<f32>)> {
        self.start_trainer()?;
        let trainer = self.trainer.as_mut().expect("started");
        let batch = trainer.config.batch;
        if rows.start >= rows.end || rows.end > batch {
            return Err(Error::Invalid(format!("rows {rows:?} are not a slice of the batch of {batch}")));
        }
        let loss = trainer.gradients(&self.be, rows);
        let loss = self.be.read(&loss).await?[0];
        Ok((loss, self.be.read(trainer.grads()).await?))
    }

    /// The second half: the step with the sum of every slice's gradient and loss. A non-finite
    /// loss ends training as in [`Session::train`].
    pub fn apply_gradients(&mut self, gradient: &[f32], loss: f32) -> Result<()> {
        self.start_trainer()?;
        let trainer = self.trainer.as_mut().expect("started");
        if !loss.is_finite() {
            let message = format!("the loss became {loss} before step {}", trainer.step);
            return Err(self.fall_back(message));
        }
        let weights = trainer.grads().len();
        if gradient.len() != weights {
            return Err(Error::Invalid(format!("a gradient of {} values for {weights} weights", gradient.len())));
        }
        self.be.write(trainer.grads(), gradient);
        trainer.apply(&self.be);
        Ok(())
    }

    /// Reads the live state back (it becomes the last good state) and returns the file bytes.
    /// Weights that are no longer finite end training like a non-finite loss: a GPU may turn
    /// NaNs into other values on the way to the loss (WGSL leaves NaN handling to the
    /// implementation), so this check is what catches a diverged run everywhere.
    pub async fn snapshot(&mut self) -> Result<Vec<u8>> {
        if let Some(trainer) = &self.trainer {
            let state = trainer.checkpoint(&self.be).await?;
            if state.states.iter().flatten().any(|v| !v.is_finite()) {
                self.trainer = None;
                self.weights = None;
                return Err(Error::Invalid(format!(
                    "the weights at step {} are not finite. Training stopped; the weights are back at step {}, \
                     the last good state.",
                    state.step, self.saved.step
                )));
            }
            let readouts = std::mem::take(&mut self.saved.readouts);
            self.saved = Checkpoint { readouts, ..state };
        }
        self.saved.to_bytes()
    }

    /// The sampling weights: the live EMA while training, else the last good state's.
    fn sampling_weights(&mut self) -> &BTensor<B> {
        match &self.trainer {
            Some(trainer) => &trainer.ema,
            None => {
                let ema = self.saved.ema();
                self.weights.get_or_insert_with(|| self.be.upload(ema, &[ema.len()]))
            }
        }
    }

    /// Rows `rows` of the batch of digits `seed` gives (all of them: `0..count`), as gray
    /// levels. A consistency model samples in one step plus one per time point; with
    /// `options.teacher`, a distillation run's teacher integrates its ODE from the same noise;
    /// a teacher's own run samples by its ODE (Heun, 18 steps unless told).
    pub async fn sample(&mut self, rows: Range<usize>, seed: u64, options: &SampleOptions) -> Result<Vec<u8>> {
        if rows.start >= rows.end {
            return Err(Error::Invalid(format!("no digits to sample in rows {rows:?}")));
        }
        let x = match &options.teacher {
            Some(t) if self.model.preconditioning == Preconditioning::Consistency => {
                self.upload_teacher()?;
                let (model, params) = self.teacher.as_ref().expect("uploaded");
                // The teacher as the student learnt from it: guided as in its distillation.
                let guidance = match self.saved.config.objective {
                    Objective::Distillation { guidance, .. } => guidance,
                    _ => 1.0,
                };
                let sampler = Sampler::for_model(model, &[], &t.solver, t.steps)?.with_guidance(model, guidance)?;
                sampler.sample(&self.be, model, params, rows, seed, options.digit)?
            }
            _ => {
                let (solver, steps) = options.teacher.as_ref().map_or(("heun", 18), |t| (t.solver.as_str(), t.steps));
                let sampler = Sampler::for_model(&self.model, &options.time_points, solver, steps)?;
                let params = self.sampling_weights().clone();
                sampler.sample(&self.be, &self.model, &params, rows, seed, options.digit)?
            }
        };
        Ok(image::to_gray(&self.be.read(&x).await?))
    }

    /// Puts the diffusion teacher a distillation run carries on the device (once).
    fn upload_teacher(&mut self) -> Result<()> {
        let Some(weights) = &self.saved.teacher else {
            return Err(Error::Invalid(
                "this run has no diffusion teacher to compare with: load a distilled run (it carries its teacher)"
                    .into(),
            ));
        };
        if self.teacher.is_none() {
            let model = Model::denoiser(self.saved.widths).with_classes(self.saved.classes);
            self.teacher = Some((model, self.be.upload(weights, &[weights.len()])));
        }
        Ok(())
    }

    /// What the project's MNIST classifier (shipped weights, on this session's backend) reads
    /// in `gray` (whole 28x28 digits of gray levels): each digit's class, the share read with
    /// p >= 0.9 and each digit's share.
    pub async fn classify(&mut self, gray: &[u8]) -> Result<Reading> {
        edits::digit_count("digits", gray)?;
        if self.evaluator.is_none() {
            self.evaluator = Some(Evaluator::shipped(&self.be)?);
        }
        let evaluator = self.evaluator.as_ref().expect("loaded");
        Ok(Reading::new(&evaluator.classify_host(&self.be, &to_model_range(gray)).await?))
    }

    /// The live readout: reads `gray` (samples of the run at its current step, as the page
    /// draws them with each preview) and keeps the reading in the run, so that its file carries
    /// the curve ([`Checkpoint::readouts`]). Returns the reading.
    pub async fn read_legibility(&mut self, gray: &[u8]) -> Result<Readout> {
        let reading = self.classify(gray).await?;
        let readout = Readout::new(self.config_and_step().1, &reading);
        self.saved.readouts.retain(|r| r.step < readout.step);
        self.saved.readouts.push(readout.clone());
        Ok(readout)
    }

    /// The readings taken along the run, oldest first.
    pub fn readouts(&self) -> &[Readout] {
        &self.saved.readouts
    }
}
