//! Checkpoints of a training run in safetensors: the online weights theta, the target
//! theta_minus, the sampling EMA, Adam's two moments (and, for a distillation, the teacher's
//! weights), the step, and the network config and training recipe as metadata. Resuming from a checkpoint continues the run exactly: every random
//! draw is keyed by (seed, step, stream), so the rest of the run is the one an uninterrupted run
//! would have taken.
//!
//! Each state is stored one tensor per parameter, named `<state>.<parameter>` (for example
//! `ema.down0.conv1.weight`), in the parameter's own shape, so other tools (PyTorch with the
//! `safetensors` package, numpy) can read the weights by name. Loading is strict: it names the
//! first missing, extra, mistyped or misshaped tensor, bad metadata, or non-finite weights, and
//! a corrupt file is an error, never a panic.

use std::collections::HashMap;

use safetensors::tensor::SafeTensors;

use crate::backend::Metric;
use crate::eval::readout::Readout;
use crate::model::Model;
use crate::nn::weights_file::{self, Flaw};
use crate::nn::{ParamLayout, UNet, Widths};
use crate::ode::Solver;
use crate::recipe::{Distance, LossKind, Objective, TrainConfig};
use crate::schedule::{CtKind, CtSchedule};
use crate::vocabulary::Named;
use crate::{Error, Result};

/// Written as the `format` metadata entry; loading refuses anything else.
pub const FORMAT: &str = "consistency-ct/1";

/// The states a checkpoint holds, in file order.
pub const STATES: [&str; 5] = ["online", "target", "ema", "adam_m", "adam_v"];

/// A run's state on the host: each state is a flat vector in the layout of
/// `UNet::with_classes(widths, classes)`.
#[derive(Clone, Debug, PartialEq)]
pub struct Checkpoint {
    pub widths: Widths,
    /// Digit classes of a class-conditional network; 0 (and absent from older files):
    /// unconditional.
    pub classes: usize,
    pub config: TrainConfig,
    /// Steps taken.
    pub step: u32,
    /// The states of [`STATES`], in that order.
    pub states: [Vec<f32>; 5],
    /// The teacher weights of a consistency or progressive distillation (at the start the
    /// denoiser's EMA; progressive distillation replaces them with each stage's student),
    /// stored as `teacher.*` tensors so that the run resumes and reproduces from its file
    /// alone.
    pub teacher: Option<Vec<f32>>,
    /// The legibility readings taken along the run (the page's live readout), oldest first;
    /// stored as the `legibility` metadata entry (absent when there are none).
    pub readouts: Vec<Readout>,
}

impl Checkpoint {
    /// A run at step 0: the network's initial weights (seeded by the recipe) as theta, theta_minus
    /// and the sampling EMA alike (Algorithm 3), and Adam's moments at zero.
    /// `classes`: 0 for an unconditional network, 10 for one that takes the digit.
    pub fn start(widths: Widths, classes: usize, config: TrainConfig) -> Checkpoint {
        let init = UNet::with_classes(widths, classes).layout.init(config.seed);
        let zeros = vec![0.0; init.len()];
        Checkpoint {
            widths,
            classes,
            config,
            step: 0,
            states: [init.clone(), init.clone(), init, zeros.clone(), zeros],
            teacher: None,
            readouts: Vec::new(),
        }
    }

    /// A run at step 0 that starts from a trained teacher (a `cm train --recipe teacher` run):
    /// a consistency distillation, a progressive distillation or a consistency tuning. theta,
    /// theta_minus and the sampling EMA start at the teacher's EMA weights (the paper
    /// initializes the consistency model from the diffusion model; a progressive student
    /// starts as its teacher), Adam's moments at zero. A class-conditional teacher gives a
    /// class-conditional student.
    pub fn from_teacher(teacher: &Checkpoint, config: TrainConfig) -> Result<Checkpoint> {
        if teacher.config.objective != Objective::Denoising {
            return Err(Error::Invalid(format!(
                "a distillation needs a diffusion teacher (cm train --recipe teacher), not a {} run",
                teacher.config.objective.name()
            )));
        }
        if !config.objective.needs_teacher() {
            return Err(Error::Invalid(format!("a {} run does not start from a teacher", config.objective.name())));
        }
        if let Objective::Distillation { guidance, .. } = config.objective {
            crate::ode::check_guidance(&teacher.model(), guidance)?;
        }
        let weights = teacher.ema().to_vec();
        let keeps = config.objective.keeps_teacher();
        let zeros = vec![0.0; weights.len()];
        Ok(Checkpoint {
            widths: teacher.widths,
            classes: teacher.classes,
            config,
            step: 0,
            states: [weights.clone(), weights.clone(), weights.clone(), zeros.clone(), zeros],
            teacher: keeps.then_some(weights),
            readouts: Vec::new(),
        })
    }

    /// Starts this run (at step 0) from another run's sampling weights where they match by
    /// parameter name and shape: e.g. a class-conditional network from an unconditional one,
    /// whose label embedding then keeps its initial values. theta, theta_minus and the sampling
    /// EMA alike take them. Returns how many parameters were copied.
    pub fn init_from(&mut self, from: &Checkpoint) -> usize {
        let layout = self.model().net.layout;
        let mut init = self.states[0].clone();
        let copied = layout.copy_matching(&mut init, &from.model().net.layout, from.ema());
        for state in &mut self.states[..3] {
            state.clone_from(&init);
        }
        copied
    }

    /// The diffusion teacher this run holds, as a teacher run to start a distillation or a
    /// tuning from: the run itself if it is a teacher, else the teacher a (consistency or
    /// progressive) distillation carries, with its weights as the sampling EMA; None for a run
    /// with no teacher.
    pub fn diffusion_teacher(&self) -> Option<Checkpoint> {
        if self.config.objective == Objective::Denoising {
            return Some(self.clone());
        }
        let weights = self.teacher.as_ref()?;
        let mut teacher = Checkpoint::start(self.widths, self.classes, TrainConfig::teacher(1));
        teacher.states[2] = weights.clone();
        Some(teacher)
    }

    /// The network this run trains (a consistency model, or the EDM teacher's denoiser).
    pub fn model(&self) -> Model {
        self.config.objective.model(self.widths, self.classes)
    }

    /// The sampling weights (the EMA of theta).
    pub fn ema(&self) -> &[f32] {
        &self.states[2]
    }

    /// The file's bytes.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let layout = UNet::with_classes(self.widths, self.classes).layout;
        for (name, flat) in STATES.iter().zip(&self.states) {
            if flat.len() != layout.len {
                return Err(Error::Invalid(format!(
                    "state '{name}' has {} values, expected {}",
                    flat.len(),
                    layout.len
                )));
            }
        }
        let teacher = self.teacher.as_deref().map(|flat| ("teacher", flat));
        let named: Vec<(String, &[f32])> = STATES
            .iter()
            .zip(&self.states)
            .map(|(state, flat)| (*state, flat.as_slice()))
            .chain(teacher)
            .map(|(state, flat)| (format!("{state}."), flat))
            .collect();
        let states: Vec<(&str, &[f32])> = named.iter().map(|(prefix, flat)| (prefix.as_str(), *flat)).collect();
        weights_file::write(&layout, &states, self.metadata())
            .map_err(|e| Error::Invalid(format!("writing checkpoint: {e}")))
    }

    /// Reads and checks a checkpoint file.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let (_, header) =
            SafeTensors::read_metadata(bytes).map_err(|e| invalid(format!("not a safetensors file: {e}")))?;
        let meta = Metadata(header.metadata().clone().unwrap_or_default());
        let format = meta.get("format")?;
        if format != FORMAT {
            return Err(invalid(format!("format is '{format}', this program reads '{FORMAT}'")));
        }
        let widths = Widths::parse(meta.get("widths")?).map_err(|e| invalid(e.to_string()))?;
        let step = meta.parse("step")?;
        // Files written before class-conditional models existed have no entry: unconditional.
        let classes: usize = if meta.0.contains_key("classes") { meta.parse("classes")? } else { 0 };
        if classes > 256 {
            return Err(invalid(format!("{classes} classes: labels are bytes, so at most 256")));
        }
        let config = config_from(&meta)?;
        if let Objective::Distillation { guidance, .. } = config.objective {
            if guidance != 1.0 && classes == 0 {
                return Err(invalid(format!("guidance {guidance} needs a class-conditional network")));
            }
        }
        let tensors = SafeTensors::deserialize(bytes).map_err(|e| invalid(format!("not a safetensors file: {e}")))?;
        let layout = UNet::with_classes(widths, classes).layout;
        let states = STATES.map(|state| read_state(&tensors, &layout, state));
        let [a, b, c, d, e] = states;
        let states = [a?, b?, c?, d?, e?];
        // A (consistency or progressive) distillation carries its teacher; no other run has one.
        let distills = config.objective.keeps_teacher();
        let teacher = if distills { Some(read_state(&tensors, &layout, "teacher")?) } else { None };
        let names: Vec<&str> = STATES.iter().copied().chain(distills.then_some("teacher")).collect();
        let expected = layout.params.len() * names.len();
        if tensors.len() != expected {
            let known: Vec<String> =
                names.iter().flat_map(|s| layout.params.iter().map(move |p| format!("{s}.{}", p.name))).collect();
            let extra = tensors.names().into_iter().find(|n| !known.iter().any(|k| k == n)).unwrap_or_default();
            return Err(invalid(format!("unexpected tensor '{extra}' (the {widths:?} network has no such parameter)")));
        }
        let readouts = match meta.0.get("legibility") {
            Some(text) => Readout::parse(text)?,
            None => Vec::new(),
        };
        Ok(Checkpoint { widths, classes, config, step, states, teacher, readouts })
    }

    fn metadata(&self) -> HashMap<String, String> {
        let c = &self.config;
        let [w0, w1, w2] = self.widths.0;
        let mut m = HashMap::new();
        let mut put = |k: &str, v: String| {
            m.insert(k.to_string(), v);
        };
        put("format", FORMAT.into());
        put("widths", format!("{w0},{w1},{w2}"));
        put("step", self.step.to_string());
        if self.classes > 0 {
            put("classes", self.classes.to_string());
            put("label_dropout", c.label_dropout.to_string());
        }
        put("objective", c.objective.name().into());
        if let Objective::Distillation { solver, n, mu, guidance } = c.objective {
            put("solver", solver.name().into());
            put("distill_n", n.to_string());
            put("distill_mu", mu.to_string());
            put("distill_guidance", guidance.to_string());
        }
        if let Objective::Progressive { teacher_steps, stage_steps } = c.objective {
            put("pd_teacher_steps", teacher_steps.to_string());
            put("pd_stage_steps", stage_steps.to_string());
        }
        if let Objective::Tuning { q, stage_steps } = c.objective {
            put("ect_q", q.to_string());
            put("ect_stage_steps", stage_steps.to_string());
        }
        put("schedule", c.schedule.kind.name().into());
        match c.schedule.kind {
            CtKind::Original { s0, s1, mu0 } => {
                put("s0", s0.to_string());
                put("s1", s1.to_string());
                put("mu0", mu0.to_string());
            }
            CtKind::Improved { s0, s1 } => {
                put("s0", s0.to_string());
                put("s1", s1.to_string());
            }
        }
        put("total_steps", c.schedule.total_steps.to_string());
        put("index_choice", c.index_choice.name().into());
        put("weighting", c.weighting.name().into());
        put("metric", c.distance.name().into());
        if let Distance::Pixel(Metric::PseudoHuber { c }) = c.distance {
            put("pseudo_huber_c", c.to_string());
        }
        put("batch", c.batch.to_string());
        put("lr", c.lr.to_string());
        put("sampling_ema", c.sampling_ema.to_string());
        put("max_grad_norm", c.max_grad_norm.to_string());
        put("seed", c.seed.to_string());
        if !self.readouts.is_empty() {
            put("legibility", Readout::to_text(&self.readouts));
        }
        m
    }
}

fn invalid(message: String) -> Error {
    Error::Invalid(format!("checkpoint: {message}"))
}

/// The metadata entries, with errors that name the entry.
struct Metadata(HashMap<String, String>);

impl Metadata {
    fn get(&self, key: &str) -> Result<&str> {
        self.0.get(key).map(String::as_str).ok_or_else(|| invalid(format!("metadata has no '{key}' entry")))
    }

    fn parse<T: std::str::FromStr>(&self, key: &str) -> Result<T> {
        let value = self.get(key)?;
        value.parse().map_err(|_| invalid(format!("metadata '{key}' = '{value}' is not a valid value")))
    }

    /// The value the entry names in `T`'s vocabulary.
    fn named<T: Named>(&self, key: &str) -> Result<T> {
        let value = self.get(key)?;
        T::parse(value).map_err(|_| invalid(format!("unknown {key} '{value}'")))
    }
}

fn config_from(meta: &Metadata) -> Result<TrainConfig> {
    // Files written before the teacher existed have no objective: they are consistency runs.
    let objective = if meta.0.contains_key("objective") { meta.named("objective")? } else { Objective::Consistency };
    let objective = match objective {
        Objective::Consistency | Objective::Denoising => objective,
        Objective::Distillation { .. } => {
            let n: usize = meta.parse("distill_n")?;
            let mu: f64 = meta.parse("distill_mu")?;
            if n < 2 || !(0.0..1.0).contains(&mu) {
                return Err(invalid(format!("distillation needs N >= 2 and 0 <= mu < 1, got N = {n}, mu = {mu}")));
            }
            let guidance: f64 =
                if meta.0.contains_key("distill_guidance") { meta.parse("distill_guidance")? } else { 1.0 };
            if !(guidance.is_finite() && guidance >= 1.0) {
                return Err(invalid(format!("distillation guidance {guidance} is not a weight >= 1")));
            }
            Objective::Distillation {
                solver: Solver::parse(meta.get("solver")?).map_err(|e| invalid(e.to_string()))?,
                n,
                mu,
                guidance,
            }
        }
        Objective::Progressive { .. } => {
            let teacher_steps: usize = meta.parse("pd_teacher_steps")?;
            let stage_steps: u32 = meta.parse("pd_stage_steps")?;
            if teacher_steps < 2 || !teacher_steps.is_power_of_two() || stage_steps == 0 {
                return Err(invalid(format!(
                    "progressive distillation needs a power-of-two teacher_steps >= 2 and stage_steps >= 1, got \
                     {teacher_steps} and {stage_steps}"
                )));
            }
            Objective::Progressive { teacher_steps, stage_steps }
        }
        Objective::Tuning { .. } => {
            let q: f64 = meta.parse("ect_q")?;
            let stage_steps: u32 = meta.parse("ect_stage_steps")?;
            if !(q.is_finite() && q > 1.0) || stage_steps == 0 {
                return Err(invalid(format!(
                    "consistency tuning needs q > 1 and stage_steps >= 1, got {q} and {stage_steps}"
                )));
            }
            Objective::Tuning { q, stage_steps }
        }
    };
    let (s0, s1) = (meta.parse("s0")?, meta.parse("s1")?);
    let kind = match meta.named("schedule")? {
        CtKind::Original { .. } => CtKind::Original { s0, s1, mu0: meta.parse("mu0")? },
        CtKind::Improved { .. } => CtKind::Improved { s0, s1 },
    };
    if s0 < 1 || s1 < s0 {
        return Err(invalid(format!("schedule needs 1 <= s0 <= s1, got s0 = {s0}, s1 = {s1}")));
    }
    let index_choice = meta.named("index_choice")?;
    let weighting = meta.named("weighting")?;
    // The pseudo-Huber constant is the file's own, whatever the recipe's is today.
    let distance = match meta.named("metric")? {
        LossKind::PseudoHuber => Distance::Pixel(Metric::PseudoHuber { c: meta.parse("pseudo_huber_c")? }),
        loss => loss.distance(),
    };
    let label_dropout: f32 = if meta.0.contains_key("label_dropout") { meta.parse("label_dropout")? } else { 0.1 };
    if !(0.0..=1.0).contains(&label_dropout) {
        return Err(invalid(format!("label_dropout {label_dropout} is not a probability")));
    }
    let batch: usize = meta.parse("batch")?;
    if batch == 0 {
        return Err(invalid("batch is 0".into()));
    }
    Ok(TrainConfig {
        objective,
        schedule: CtSchedule { kind, total_steps: meta.parse("total_steps")? },
        index_choice,
        weighting,
        distance,
        batch,
        lr: meta.parse("lr")?,
        sampling_ema: meta.parse("sampling_ema")?,
        max_grad_norm: meta.parse("max_grad_norm")?,
        label_dropout,
        seed: meta.parse("seed")?,
    })
}

/// One state's tensors gathered into a flat vector of `layout`, each checked by name, dtype and
/// shape, and for finite values.
fn read_state(tensors: &SafeTensors, layout: &ParamLayout, state: &str) -> Result<Vec<f32>> {
    weights_file::read(tensors, layout, &format!("{state}.")).map_err(|(name, flaw, shape)| {
        invalid(match flaw {
            Flaw::Missing => format!("missing tensor '{name}'"),
            Flaw::Dtype(dtype) => format!("tensor '{name}' is {dtype:?}, expected F32"),
            Flaw::Shape(found) => format!("tensor '{name}' has shape {found:?}, the network expects {shape:?}"),
            Flaw::NonFinite(_) => format!("tensor '{name}' holds non-finite values"),
        })
    })
}
