//! The browser binding (wasm-bindgen): the only module that touches web-sys.
//!
//! The page (`www/app.js`) loads the module through Trunk's generated loader, which runs
//! [`start`] and then exposes the exports below to the page's script as `window.wasmBindings`.
//!
//! [`Studio`] is the page's whole engine: one backend (WebGPU, or the CPU backend compiled to
//! wasm when WebGPU is missing) holding a run (a checkpoint), training it a chunk at a time,
//! sampling and editing with its EMA weights, and handing back its bytes for autosave and
//! download. Every long call returns a Promise and yields to the browser while the GPU works,
//! so the tab stays responsive.

use std::cell::RefCell;
use std::ops::Range;
use std::rc::Rc;

use serde::{Deserialize, Serialize};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;

use crate::backend::cpu::CpuBackend;
use crate::backend::gpu::GpuBackend;
use crate::backend::{BTensor, Backend};
use crate::checkpoint::{self, Checkpoint};
use crate::data::mnist::{Mnist, CLASSES};
use crate::eval::classifier::to_model_range;
use crate::eval::Evaluator;
use crate::gpu::context::AdapterSummary;
use crate::gpu::GpuContext;
use crate::model::{Model, Preconditioning};
use crate::nn::Widths;
use crate::sample::Sampler;
use crate::train::{LossKind, Objective, Recipe, RecipeKind, Trainer};
use crate::{edit, image, sample, selftest, views, Error};

/// Where WebGPU works, for every message about its absence.
const WHERE_WEBGPU_WORKS: &str = "WebGPU works in Chrome or Edge 113+ on Windows, macOS and ChromeOS (on Linux \
     and Android in recent versions on supported GPUs, or with chrome://flags/#enable-unsafe-webgpu), Safari 26+, \
     and Firefox 141+ on Windows (elsewhere with dom.webgpu.enabled in about:config), on a page served over https \
     or from localhost.";

/// What a person sees when the browser has no WebGPU at all.
const NO_WEBGPU: &str = "This browser has no WebGPU (navigator.gpu is missing).";

/// What a person sees when WebGPU is there but gives no adapter.
const NO_ADAPTER: &str = "WebGPU is present, but the browser offers no adapter: the GPU may be blocklisted \
     (see chrome://gpu) or WebGPU turned off for it in the browser's settings.";

/// Runs once, when the module is instantiated: panics go to the console with a stack trace.
#[wasm_bindgen(start)]
pub fn start() {
    console_error_panic_hook::set_once();
}

fn js_error(e: impl std::fmt::Display) -> JsValue {
    js_sys::Error::new(&e.to_string()).into()
}

/// The adapter as the page sees it: `{ name, backend, device_type, driver, is_fallback }`.
#[derive(Serialize)]
struct EngineInfo {
    name: String,
    backend: String,
    device_type: String,
    driver: String,
    is_fallback: bool,
}

impl From<AdapterSummary> for EngineInfo {
    fn from(a: AdapterSummary) -> Self {
        EngineInfo {
            name: a.name,
            backend: a.backend,
            device_type: a.device_type,
            driver: a.driver,
            is_fallback: a.is_fallback,
        }
    }
}

/// Whether `navigator.gpu` exists (it is missing without WebGPU, and outside secure contexts).
fn has_navigator_gpu() -> bool {
    let global = js_sys::global();
    js_sys::Reflect::get(&global, &JsValue::from_str("navigator"))
        .ok()
        .filter(|navigator| navigator.is_object())
        .and_then(|navigator| js_sys::Reflect::get(&navigator, &JsValue::from_str("gpu")).ok())
        .is_some_and(|gpu| !gpu.is_undefined() && !gpu.is_null())
}

/// Opens the GPU device, or says what a person can do about it.
async fn open_gpu() -> Result<GpuContext, JsValue> {
    if !has_navigator_gpu() {
        return Err(js_error(format!("{NO_WEBGPU} {WHERE_WEBGPU_WORKS}")));
    }
    GpuContext::new().await.map_err(|e| match e {
        Error::NoAdapter(detail) => {
            web_sys::console::warn_1(&JsValue::from_str(&format!("requestAdapter: {detail}")));
            js_error(format!("{NO_ADAPTER} {WHERE_WEBGPU_WORKS}"))
        }
        other => js_error(other),
    })
}

/// One line of the engine self-check, as the page sees it.
#[derive(Serialize)]
struct CheckResult {
    name: String,
    error: f32,
    tolerance: f32,
    passed: bool,
}

/// Runs [`crate::selftest`]: the GPU kernels on this browser's WebGPU against the CPU backend
/// compiled to wasm. Resolves to `[{ name, error, tolerance, passed }]`.
#[wasm_bindgen]
pub async fn engine_selftest() -> Result<JsValue, JsValue> {
    let gpu = GpuBackend::new(open_gpu().await?);
    let checks = selftest::run(&gpu, &CpuBackend::new()).await.map_err(js_error)?;
    let results: Vec<CheckResult> = checks
        .iter()
        .map(|c| CheckResult { name: c.name.clone(), error: c.error, tolerance: c.tolerance, passed: c.passed() })
        .collect();
    serde_wasm_bindgen::to_value(&results).map_err(JsValue::from)
}

/// The digits the project's MNIST classifier (`eval`, shipped weights, CPU backend) reads in
/// `gray` (28x28 gray levels one after another): a `Uint8Array` of classes 0-9.
#[wasm_bindgen]
pub async fn classify_digits(gray: Vec<u8>) -> Result<Vec<u8>, JsValue> {
    let be = CpuBackend::new();
    let evaluator = Evaluator::shipped(&be).map_err(js_error)?;
    Ok(evaluator.classify_host(&be, &to_model_range(&gray)).await.map_err(js_error)?.classes)
}

/// A run's knobs as the page's controls give them (see [`Recipe`]).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Settings {
    /// "tiny", "small", "base" or "C0,C1,C2".
    widths: String,
    /// "improved" or "original"; or, from the loaded run's diffusion teacher (a teacher run,
    /// or a distilled run, which carries its teacher), "distill", "progressive" or "tuning".
    recipe: String,
    /// "l2", "l1", "pseudo-huber", "perceptual", or absent for the recipe's own.
    loss: Option<String>,
    total_steps: u32,
    batch: usize,
    lr: f32,
    seed: u64,
    /// A class-conditional network (section 8), which samples a chosen digit.
    #[serde(default)]
    conditional: bool,
}

impl Settings {
    fn recipe(&self) -> crate::Result<Recipe> {
        let kind = match self.recipe.as_str() {
            "improved" => RecipeKind::Improved,
            "original" => RecipeKind::Original,
            "distill" => RecipeKind::Distillation { solver: crate::ode::Solver::Heun },
            "progressive" => RecipeKind::Progressive,
            "tuning" => RecipeKind::Tuning,
            other => {
                return Err(Error::Invalid(format!(
                    "unknown recipe '{other}': improved, original, distill, progressive or tuning"
                )))
            }
        };
        let loss = match self.loss.as_deref() {
            None | Some("") => None,
            Some("l2") => Some(LossKind::L2),
            Some("l1") => Some(LossKind::L1),
            Some("pseudo-huber") => Some(LossKind::PseudoHuber),
            Some("perceptual") => Some(LossKind::Perceptual),
            Some(other) => {
                return Err(Error::Invalid(format!("unknown loss '{other}': l2, l1, pseudo-huber or perceptual")))
            }
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

/// How the page asks for digits (see [`Studio::sample`]).
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct SampleOptions {
    /// Refinement times after the first step (Algorithm 1), descending in (eps, T).
    #[serde(default)]
    time_points: Vec<f64>,
    /// The digit, for a class-conditional model; absent: any digit.
    digit: Option<u8>,
    /// Sample the run's diffusion teacher instead, by its ODE.
    teacher: Option<TeacherSampling>,
}

#[derive(Deserialize)]
struct TeacherSampling {
    /// "heun" or "euler".
    solver: String,
    steps: usize,
}

/// Where the run stands, for the page's read-outs.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Status {
    backend: String,
    /// "consistency", "denoising" (a diffusion teacher) or "distillation".
    objective: &'static str,
    /// Digit classes of a class-conditional network, 0 for an unconditional one.
    classes: usize,
    /// Whether the run has a diffusion teacher to compare with (a teacher run itself, or a
    /// distillation run, which carries its teacher).
    has_teacher: bool,
    /// The classifier-free guidance weight of a distillation's teacher (1: none).
    guidance: f64,
    step: u32,
    total_steps: u32,
    widths: [usize; 3],
    parameters: usize,
    recipe: String,
    loss: &'static str,
    batch: usize,
    /// N(k): grid points of the current discretization.
    discretization: usize,
    /// mu(k): the target network's EMA decay.
    mu: f64,
    /// Whether MNIST is loaded (training needs it).
    has_data: bool,
}

/// A run on one backend: the last good state on the host, and, while training, the trainer
/// that holds the live state on the device.
struct Session<B: Backend> {
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
}

impl<B: Backend> Session<B> {
    fn new(be: B, saved: Checkpoint) -> Self {
        Session { model: saved.model(), be, saved, weights: None, trainer: None, teacher: None, data: None }
    }

    /// Replaces the run (a loaded file or a fresh start); the training digits stay.
    fn replace(&mut self, saved: Checkpoint) {
        self.model = saved.model();
        self.saved = saved;
        self.weights = None;
        self.trainer = None;
        self.teacher = None;
    }

    fn status(&self) -> Status {
        let (config, step) = match &self.trainer {
            Some(t) => (&t.config, t.step),
            None => (&self.saved.config, self.saved.step),
        };
        Status {
            backend: self.be.name(),
            objective: checkpoint::objective_name(config.objective),
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

    /// The diffusion teacher of the loaded run as a teacher checkpoint: the run itself if it is
    /// one, or the teacher a distilled run carries.
    fn teacher_checkpoint(&self) -> crate::Result<Checkpoint> {
        if self.saved.config.objective == Objective::Denoising {
            return Ok(self.saved.clone());
        }
        let Some(weights) = &self.saved.teacher else {
            return Err(Error::Invalid(
                "this recipe starts from a diffusion teacher: load a teacher run or the distilled model first".into(),
            ));
        };
        let mut teacher =
            Checkpoint::start(self.saved.widths, self.saved.classes, crate::train::TrainConfig::teacher(1));
        teacher.states[2] = weights.clone();
        Ok(teacher)
    }

    /// The live weights' view of one training digit's noise strip (see [`views::trajectory`]):
    /// the noised digits, then f of each, as gray levels.
    async fn trajectory(&mut self, index: usize, seed: u64, times: &[f64]) -> crate::Result<Vec<u8>> {
        let data = self.data.as_ref().ok_or_else(|| Error::Invalid("MNIST is not loaded yet".into()))?;
        let i = index % data.count;
        let x0 = to_model_range(&data.images[i * 784..(i + 1) * 784]);
        let params = self.sampling_weights().clone();
        let (shown, mapped) = views::trajectory(&self.be, &self.model, &params, &x0, times, seed);
        let mut gray = image::to_gray(&self.be.read(&shown).await?);
        gray.extend(image::to_gray(&self.be.read(&mapped).await?));
        Ok(gray)
    }

    /// Multistep sampling frame by frame ([`views::multistep_trace`]): captions and gray levels.
    async fn multistep(
        &mut self,
        count: usize,
        seed: u64,
        options: &SampleOptions,
    ) -> crate::Result<(Vec<String>, Vec<u8>)> {
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
    fn start_trainer(&mut self) -> crate::Result<()> {
        if self.trainer.is_none() {
            let data = self.data.as_ref().ok_or_else(|| Error::Invalid("MNIST is not loaded yet".into()))?;
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

    /// `steps` more steps; on any failure (a non-finite loss, a lost device) the live state is
    /// dropped and the run is back at its last good state, which the message names.
    async fn train(&mut self, steps: u32) -> crate::Result<f32> {
        self.start_trainer()?;
        let trainer = self.trainer.as_mut().expect("started");
        match trainer.run(&self.be, steps).await {
            Ok(loss) => Ok(loss),
            Err(e) => Err(self.fall_back(e)),
        }
    }

    /// The first half of a data-parallel step (the page's CPU workers): samples `rows` of the
    /// batch give their share of the mean loss and their gradient, which the page sums.
    async fn gradients(&mut self, rows: Range<usize>) -> crate::Result<(f32, Vec<f32>)> {
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
    fn apply_gradients(&mut self, gradient: &[f32], loss: f32) -> crate::Result<()> {
        self.start_trainer()?;
        let trainer = self.trainer.as_mut().expect("started");
        if !loss.is_finite() {
            let message = format!("the loss became {loss} before step {}", trainer.step);
            return Err(self.fall_back(message));
        }
        if gradient.len() != trainer.grads().len() {
            let weights = trainer.grads().len();
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
    async fn snapshot(&mut self) -> crate::Result<Vec<u8>> {
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
            self.saved = state;
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

    /// Rows `rows` of the batch of digits `seed` gives (all of them: `0..count`).
    async fn sample(&mut self, rows: Range<usize>, seed: u64, options: &SampleOptions) -> crate::Result<Vec<u8>> {
        if rows.start >= rows.end {
            return Err(Error::Invalid(format!("no digits to sample in rows {rows:?}")));
        }
        let x = match &options.teacher {
            // A distillation run's teacher, by its ODE from the same noise.
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
                // A teacher's run (from `cm train --recipe teacher`) samples by its ODE, by
                // default Heun with 18 steps.
                let (solver, steps) = options.teacher.as_ref().map_or(("heun", 18), |t| (t.solver.as_str(), t.steps));
                let sampler = Sampler::for_model(&self.model, &options.time_points, solver, steps)?;
                let params = self.sampling_weights().clone();
                sampler.sample(&self.be, &self.model, &params, rows, seed, options.digit)?
            }
        };
        Ok(image::to_gray(&self.be.read(&x).await?))
    }

    /// Puts the diffusion teacher a distillation run carries on the device (once).
    fn upload_teacher(&mut self) -> crate::Result<()> {
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
}

/// The page's sampling options; undefined or null: one step, any digit.
fn sample_options(value: JsValue) -> crate::Result<SampleOptions> {
    if value.is_undefined() || value.is_null() {
        return Ok(SampleOptions::default());
    }
    serde_wasm_bindgen::from_value(value).map_err(|e| Error::Invalid(format!("sampling options: {e}")))
}

/// Pixels of a digit.
const PIXELS: usize = image::SIDE * image::SIDE;

/// Checks that `gray` is whole 28x28 digits and returns how many.
fn digit_count(what: &str, gray: &[u8]) -> crate::Result<usize> {
    if gray.is_empty() || !gray.len().is_multiple_of(PIXELS) {
        return Err(Error::Invalid(format!("{what}: {} gray levels are not whole 28x28 digits", gray.len())));
    }
    Ok(gray.len() / PIXELS)
}

/// Each `factor` x `factor` tile of 28x28 digits replaced by its mean: the low-resolution digit
/// (`[N, 28 / factor, 28 / factor]`) and its nearest-neighbour upsampling, for display.
fn tile_means(digits: &[f32], factor: usize) -> (Vec<f32>, Vec<f32>) {
    let side = image::SIDE / factor;
    let mut low = vec![0.0; digits.len() / (factor * factor)];
    let mut shown = vec![0.0; digits.len()];
    for (n, digit) in digits.chunks_exact(PIXELS).enumerate() {
        for (i, v) in digit.iter().enumerate() {
            let (y, x) = (i / image::SIDE, i % image::SIDE);
            low[n * side * side + (y / factor) * side + x / factor] += v / (factor * factor) as f32;
        }
        for (i, v) in shown[n * PIXELS..(n + 1) * PIXELS].iter_mut().enumerate() {
            let (y, x) = (i / image::SIDE, i % image::SIDE);
            *v = low[n * side * side + (y / factor) * side + x / factor];
        }
    }
    (low, shown)
}

/// The edits of section 7 on the session's sampling weights. Each returns what the model was
/// given (for display) followed by the result, as gray levels.
impl<B: Backend> Session<B> {
    fn upload_digits(&self, what: &str, gray: &[u8]) -> crate::Result<BTensor<B>> {
        let n = digit_count(what, gray)?;
        Ok(self.be.upload(&to_model_range(gray), &[n, 1, image::SIDE, image::SIDE]))
    }

    async fn given_and_result(&self, given: &[u8], result: &BTensor<B>) -> crate::Result<Vec<u8>> {
        let mut out = given.to_vec();
        out.extend(image::to_gray(&self.be.read(result).await?));
        Ok(out)
    }

    async fn inpaint(&mut self, gray: &[u8], keep: &[u8], seed: u64) -> crate::Result<Vec<u8>> {
        let y = self.upload_digits("digits", gray)?;
        let n = digit_count("keep mask", keep)?;
        let keep_mask: Vec<f32> = keep.iter().map(|&k| if k > 0 { 1.0 } else { 0.0 }).collect();
        let keep_tensor = self.be.upload(&keep_mask, &[n, 1, image::SIDE, image::SIDE]);
        let params = self.sampling_weights().clone();
        let x = edit::inpaint(&self.be, &self.model, &params, &y, &keep_tensor, edit::INPAINT_TIME_POINTS, seed)?;
        self.given_and_result(gray, &x).await
    }

    async fn super_resolve(&mut self, gray: &[u8], factor: usize, seed: u64) -> crate::Result<Vec<u8>> {
        let n = digit_count("digits", gray)?;
        if factor != 2 && factor != 4 {
            return Err(Error::Invalid(format!("super-resolution is from 14x14 (factor 2) or 7x7 (4), not {factor}")));
        }
        let (low, shown) = tile_means(&to_model_range(gray), factor);
        let side = image::SIDE / factor;
        let low = self.be.upload(&low, &[n, 1, side, side]);
        let params = self.sampling_weights().clone();
        let x = edit::super_resolve(&self.be, &self.model, &params, &low, edit::SUPER_RESOLVE_TIME_POINTS, seed)?;
        self.given_and_result(&image::to_gray(&shown), &x).await
    }

    /// Noises the digits to `sigma` (`y = x + sigma z`, z from the seed) and denoises them.
    async fn denoise(&mut self, gray: &[u8], sigma: f64, seed: u64) -> crate::Result<Vec<u8>> {
        let x = self.upload_digits("digits", gray)?;
        let noisy = sample::noised(&self.be, Some(&x), &x.shape, sigma, seed, 0);
        let params = self.sampling_weights().clone();
        let out = edit::denoise(&self.be, &self.model, &params, &noisy, sigma)?;
        let given = image::to_gray(&self.be.read(&noisy).await?);
        self.given_and_result(&given, &out).await
    }

    async fn sdedit(&mut self, gray: &[u8], t_start: f64, seed: u64) -> crate::Result<Vec<u8>> {
        let strokes = self.upload_digits("strokes", gray)?;
        let later: Vec<f64> = edit::SDEDIT_TIME_POINTS.iter().copied().filter(|&t| t < t_start).collect();
        let params = self.sampling_weights().clone();
        let x = edit::sdedit(&self.be, &self.model, &params, &strokes, t_start, &later, seed)?;
        self.given_and_result(gray, &x).await
    }

    async fn interpolate(&mut self, seed_a: u64, seed_b: u64, count: usize) -> crate::Result<Vec<u8>> {
        let alphas: Vec<f64> = (0..count).map(|i| i as f64 / (count.max(2) - 1) as f64).collect();
        let params = self.sampling_weights().clone();
        let x = edit::interpolate(&self.be, &self.model, &params, seed_a, seed_b, &alphas)?;
        Ok(image::to_gray(&self.be.read(&x).await?))
    }
}

/// The session on whichever backend the page got.
enum Engine {
    Gpu(Box<Session<GpuBackend>>),
    Cpu(Box<Session<CpuBackend>>),
}

/// Runs `$body` with `$s` bound to the session, whatever its backend.
macro_rules! with_session {
    ($engine:expr, $s:ident => $body:expr) => {
        match $engine {
            Engine::Gpu($s) => {
                let $s = &mut **$s;
                $body
            }
            Engine::Cpu($s) => {
                let $s = &mut **$s;
                $body
            }
        }
    };
}

/// The page's engine. Calls are meant one at a time (the page queues them); a call made while
/// another is still running is refused with a "busy" error rather than interleaved.
#[wasm_bindgen]
pub struct Studio {
    slot: Slot,
}

/// Where the engine rests between calls: a call takes it out and puts it back when done, so an
/// async call owns it across its awaits and an overlapping call finds the slot empty.
type Slot = Rc<RefCell<Option<Engine>>>;

/// The engine taken out of its slot for one call; dropping it puts it back.
struct Claimed {
    slot: Slot,
    engine: Option<Engine>,
}

impl Drop for Claimed {
    fn drop(&mut self) {
        *self.slot.borrow_mut() = self.engine.take();
    }
}

impl std::ops::Deref for Claimed {
    type Target = Engine;
    fn deref(&self) -> &Engine {
        self.engine.as_ref().expect("held until dropped")
    }
}

impl std::ops::DerefMut for Claimed {
    fn deref_mut(&mut self) -> &mut Engine {
        self.engine.as_mut().expect("held until dropped")
    }
}

/// The engine for the duration of one call, or the "busy" error.
fn claim(slot: &Slot) -> Result<Claimed, JsValue> {
    let engine = slot.borrow_mut().take().ok_or_else(|| js_error("the engine is busy with another call"))?;
    Ok(Claimed { slot: slot.clone(), engine: Some(engine) })
}

/// Runs an async call on the engine as a Promise: Rust futures handed to JS must own what they
/// use, so the call holds the engine until it settles.
fn on_engine<T, F, Fut>(slot: &Slot, call: F) -> js_sys::Promise
where
    T: Into<JsValue>,
    F: FnOnce(Claimed) -> Fut + 'static,
    Fut: std::future::Future<Output = Result<T, JsValue>> + 'static,
{
    let claimed = claim(slot);
    future_to_promise(async move { call(claimed?).await.map(Into::into) })
}

/// The Promise of one async session call that yields bytes (resolving to a `Uint8Array`).
macro_rules! bytes_call {
    ($studio:ident, $s:ident => $call:expr) => {
        on_engine(&$studio.slot, move |mut engine| async move {
            let bytes = with_session!(&mut *engine, $s => $call.await).map_err(js_error)?;
            Ok(js_sys::Uint8Array::from(&bytes[..]))
        })
    };
}

#[wasm_bindgen]
impl Studio {
    /// Opens the engine on WebGPU (or, with `cpu`, on the CPU backend) with the run in
    /// `checkpoint` (safetensors bytes). Rejects with a message a person can act on.
    pub async fn open(cpu: bool, checkpoint: Vec<u8>) -> Result<Studio, JsValue> {
        let saved = Checkpoint::from_bytes(&checkpoint).map_err(js_error)?;
        let engine = if cpu {
            Engine::Cpu(Box::new(Session::new(CpuBackend::new(), saved)))
        } else {
            Engine::Gpu(Box::new(Session::new(GpuBackend::new(open_gpu().await?), saved)))
        };
        Ok(Studio { slot: Rc::new(RefCell::new(Some(engine))) })
    }

    /// The WebGPU adapter: `{ name, backend, device_type, driver, is_fallback }`, or null on
    /// the CPU backend.
    pub fn adapter(&self) -> Result<JsValue, JsValue> {
        let engine = claim(&self.slot)?;
        match &*engine {
            Engine::Gpu(s) => {
                serde_wasm_bindgen::to_value(&EngineInfo::from(s.be.context().adapter.clone())).map_err(JsValue::from)
            }
            Engine::Cpu(_) => Ok(JsValue::NULL),
        }
    }

    /// Where the run stands: step, K, widths, parameter count, recipe, loss, batch, N(k), mu(k).
    pub fn status(&self) -> Result<JsValue, JsValue> {
        let mut engine = claim(&self.slot)?;
        let status = with_session!(&mut *engine, s => s.status());
        serde_wasm_bindgen::to_value(&status).map_err(JsValue::from)
    }

    /// Replaces the run with the checkpoint in `bytes` (checked; on error nothing changes).
    pub fn load(&self, bytes: &[u8]) -> Result<(), JsValue> {
        let saved = Checkpoint::from_bytes(bytes).map_err(js_error)?;
        let mut engine = claim(&self.slot)?;
        with_session!(&mut *engine, s => s.replace(saved));
        Ok(())
    }

    /// Starts a new run at step 0 from the page's settings
    /// `{ widths, recipe, loss?, totalSteps, batch, lr, seed }`.
    pub fn restart(&self, settings: JsValue) -> Result<(), JsValue> {
        let settings: Settings = serde_wasm_bindgen::from_value(settings).map_err(JsValue::from)?;
        let widths = Widths::parse(&settings.widths).map_err(js_error)?;
        let config = settings.recipe().and_then(|r| r.config()).map_err(js_error)?;
        let classes = if settings.conditional { CLASSES } else { 0 };
        let mut engine = claim(&self.slot)?;
        let start = if config.objective.needs_teacher() {
            // From the loaded run's teacher, whose widths and classes the new run takes.
            with_session!(&mut *engine, s => s.teacher_checkpoint())
                .and_then(|teacher| Checkpoint::from_teacher(&teacher, config))
                .map_err(js_error)?
        } else {
            Checkpoint::start(widths, classes, config)
        };
        with_session!(&mut *engine, s => s.replace(start));
        Ok(())
    }

    /// Gives the engine MNIST's training set: the bytes of the images and labels IDX files
    /// (plain or gzipped), checked.
    pub fn set_training_data(&self, images: &[u8], labels: &[u8]) -> Result<u32, JsValue> {
        let mnist = Mnist::from_idx_bytes(images, labels).map_err(js_error)?;
        let mut engine = claim(&self.slot)?;
        let count = mnist.count as u32;
        with_session!(&mut *engine, s => s.data = Some(mnist));
        Ok(count)
    }

    /// Takes `steps` training steps in one submission; resolves to their mean loss. On a
    /// non-finite loss or a GPU failure it rejects, and the run is back at its last good state.
    pub fn train(&self, steps: u32) -> js_sys::Promise {
        on_engine(&self.slot, move |mut engine| async move {
            with_session!(&mut *engine, s => s.train(steps).await).map_err(js_error)
        })
    }

    /// Reads the whole state back (it becomes the last good state a failure returns to) and
    /// resolves to the checkpoint file's bytes (a `Uint8Array`).
    pub fn snapshot(&self) -> js_sys::Promise {
        bytes_call!(self, s => s.snapshot())
    }

    /// `count` samples from the EMA weights; resolves to their 28x28 gray levels (a
    /// `Uint8Array` of `count * 784`). The same seed gives the same digits on every backend.
    /// `options` (all optional): `{ timePoints, digit, teacher: { solver, steps } }`: one step
    /// from T then one more per time point (descending, in (eps, T)); the digit of a
    /// class-conditional model; or, with `teacher`, the run's diffusion teacher integrating its
    /// ODE from the same noise ("heun" or "euler", `steps` steps).
    pub fn sample(&self, count: u32, seed: u32, options: JsValue) -> js_sys::Promise {
        let options = match sample_options(options) {
            Ok(options) => options,
            Err(e) => return js_sys::Promise::reject(&js_error(e)),
        };
        bytes_call!(self, s => s.sample(0..count as usize, seed as u64, &options))
    }

    /// Digits `start..end` of the batch `sample` would draw with this seed and options: how
    /// the CPU workers share one sampling call. Resolves to their gray levels.
    pub fn sample_rows(&self, start: u32, end: u32, seed: u32, options: JsValue) -> js_sys::Promise {
        let options = match sample_options(options) {
            Ok(options) => options,
            Err(e) => return js_sys::Promise::reject(&js_error(e)),
        };
        bytes_call!(self, s => s.sample(start as usize..end as usize, seed as u64, &options))
    }

    /// Data-parallel training, first half: samples `start..end` of the next step's batch.
    /// Resolves to `{ loss, gradient }`: their share of the batch's mean loss and the gradient
    /// of that share (a `Float32Array` over every weight). Gradients of disjoint slices add up
    /// to the whole batch's.
    pub fn gradients(&self, start: u32, end: u32) -> js_sys::Promise {
        on_engine(&self.slot, move |mut engine| async move {
            let rows = start as usize..end as usize;
            let (loss, gradient) = with_session!(&mut *engine, s => s.gradients(rows).await).map_err(js_error)?;
            let out = js_sys::Object::new();
            js_sys::Reflect::set(&out, &"loss".into(), &loss.into())?;
            js_sys::Reflect::set(&out, &"gradient".into(), &js_sys::Float32Array::from(&gradient[..]))?;
            Ok(out)
        })
    }

    /// Data-parallel training, second half: the step taken with the sum of every slice's
    /// gradient and loss, the same on every worker so their weights stay identical. A
    /// non-finite loss stops training and the run is back at its last good state.
    pub fn apply_gradients(&self, gradient: &[f32], loss: f32) -> Result<(), JsValue> {
        let mut engine = claim(&self.slot)?;
        with_session!(&mut *engine, s => s.apply_gradients(gradient, loss)).map_err(js_error)
    }

    /// Inpainting (Algorithm 4, A = identity): `gray` digits (28x28 gray levels each) redone
    /// where `keep` (one byte per pixel) is 0 and kept bit for bit where it is 1. Resolves to
    /// the given digits followed by the results.
    pub fn inpaint(&self, gray: Vec<u8>, keep: Vec<u8>, seed: u32) -> js_sys::Promise {
        bytes_call!(self, s => s.inpaint(&gray, &keep, seed as u64))
    }

    /// Super-resolution (Algorithm 4 with per-tile means): each digit averaged to 14x14
    /// (`factor` 2) or 7x7 (4), then detail generated that keeps those means. Resolves to the
    /// low-resolution digits (upsampled) followed by the results.
    pub fn super_resolve(&self, gray: Vec<u8>, factor: u32, seed: u32) -> js_sys::Promise {
        bytes_call!(self, s => s.super_resolve(&gray, factor as usize, seed as u64))
    }

    /// Denoising: each digit noised to `sigma` (in [eps, T]) and mapped back by one evaluation.
    /// Resolves to the noisy digits followed by the results.
    pub fn denoise(&self, gray: Vec<u8>, sigma: f64, seed: u32) -> js_sys::Promise {
        bytes_call!(self, s => s.denoise(&gray, sigma, seed as u64))
    }

    /// SDEdit: rough strokes noised to `t_start`, then mapped to digits. Resolves to the
    /// strokes followed by the results.
    pub fn sdedit(&self, gray: Vec<u8>, t_start: f64, seed: u32) -> js_sys::Promise {
        bytes_call!(self, s => s.sdedit(&gray, t_start, seed as u64))
    }

    /// The consistency property, seen: training digit `index` noised to `count` times from eps
    /// to T with one noise draw of `seed`, and the model's f(x_t, t) under each. Resolves to
    /// `{ times, gray }`: the times and the gray levels of the noised digits (scaled for
    /// display) followed by the mapped ones (`2 * count * 784` bytes).
    pub fn trajectory(&self, index: u32, seed: u32, count: u32) -> js_sys::Promise {
        on_engine(&self.slot, move |mut engine| async move {
            let times = views::strip_times((count as usize).clamp(2, 32));
            let gray = with_session!(&mut *engine, s => s.trajectory(index as usize, seed as u64, &times).await)
                .map_err(js_error)?;
            let out = js_sys::Object::new();
            let list = js_sys::Array::new();
            for t in &times {
                list.push(&(*t).into());
            }
            js_sys::Reflect::set(&out, &"times".into(), &list)?;
            js_sys::Reflect::set(&out, &"gray".into(), &js_sys::Uint8Array::from(&gray[..]))?;
            Ok(out)
        })
    }

    /// Multistep sampling (Algorithm 1) frame by frame for `count` digits of `seed` and the
    /// sample options (`timePoints`, `digit`): the noise, f of it, then per time point the
    /// re-noised digits and f of them. Resolves to `{ captions, gray }` (a frame of `count *
    /// 784` bytes per caption).
    pub fn multistep(&self, count: u32, seed: u32, options: JsValue) -> js_sys::Promise {
        let options = match sample_options(options) {
            Ok(options) => options,
            Err(e) => return js_sys::Promise::reject(&js_error(e)),
        };
        on_engine(&self.slot, move |mut engine| async move {
            let (captions, gray) =
                with_session!(&mut *engine, s => s.multistep(count as usize, seed as u64, &options).await)
                    .map_err(js_error)?;
            let out = js_sys::Object::new();
            let list = js_sys::Array::new();
            for c in &captions {
                list.push(&c.into());
            }
            js_sys::Reflect::set(&out, &"captions".into(), &list)?;
            js_sys::Reflect::set(&out, &"gray".into(), &js_sys::Uint8Array::from(&gray[..]))?;
            Ok(out)
        })
    }

    /// The running recipe's schedule: `{ step, totalSteps, grid, steps, discretization, mu }`,
    /// the Karras grid at the current step and N(k), mu(k) at 60 steps over K.
    pub fn schedule(&self) -> Result<JsValue, JsValue> {
        let mut engine = claim(&self.slot)?;
        let view = with_session!(&mut *engine, s => {
            let (config, step) = match &s.trainer {
                Some(t) => (&t.config, t.step),
                None => (&s.saved.config, s.saved.step),
            };
            views::schedule(config, step, 60)
        });
        serde_wasm_bindgen::to_value(&view).map_err(JsValue::from)
    }

    /// `count` digits along the spherical interpolation between the noises of two seeds.
    pub fn interpolate(&self, seed_a: u32, seed_b: u32, count: u32) -> js_sys::Promise {
        bytes_call!(self, s => s.interpolate(seed_a as u64, seed_b as u64, count as usize))
    }
}
