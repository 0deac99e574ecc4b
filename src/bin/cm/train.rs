//! `cm train`: a training run on MNIST with a progress bar, a loss log, checkpoints and
//! optionally the MNIST-FID over training.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Instant;

use clap::ValueEnum;
use consistency::backend::Backend;
use consistency::checkpoint::Checkpoint;
use consistency::data::mnist::{Mnist, Split, CLASSES};
use consistency::eval::{Evaluator, Quality};
use consistency::nn::Widths;
use consistency::ode::Solver;
use consistency::recipe::{LossKind, Recipe, RecipeKind, TrainConfig};
use consistency::train::Trainer;
use consistency::vocabulary::Named;
use consistency::Error;
use indicatif::{ProgressBar, ProgressStyle};

use crate::files::{append, load_checkpoint, write_atomically};
use crate::BackendChoice;

#[derive(Clone, Copy, PartialEq, ValueEnum)]
enum RecipeChoice {
    /// Improved consistency training (section 6), the default.
    Improved,
    /// The original consistency training (section 5, Algorithm 3).
    Original,
    /// The EDM diffusion teacher (section 4): denoising score matching; sample it with
    /// `cm sample --solver heun --steps 18`.
    Teacher,
    /// Consistency distillation (section 4, Algorithm 2) from --teacher with --solver.
    Distill,
    /// Progressive distillation (section 10) from --teacher: four stages halve its 16 Euler
    /// steps down to 1; sample with `cm sample --solver euler --steps 1`.
    Progressive,
    /// Consistency tuning (ECT, section 11) from --teacher.
    Tuning,
}

#[derive(Clone, Copy, PartialEq, ValueEnum)]
enum LossChoice {
    L2,
    L1,
    PseudoHuber,
    /// The LPIPS-style distance on a frozen digit network (section 9).
    Perceptual,
}

#[derive(clap::Args)]
pub struct Args {
    /// Network widths: tiny, small, base or C0,C1,C2.
    #[arg(long, default_value = "small")]
    config: String,
    #[arg(long, value_enum, default_value = "improved")]
    recipe: RecipeChoice,
    /// Train until this step (a resumed run continues up to it).
    #[arg(long, default_value_t = 3000)]
    steps: u32,
    /// K, the length the schedule's curriculum is planned for (default: --steps).
    #[arg(long)]
    total_steps: Option<u32>,
    /// Override the recipe's loss.
    #[arg(long, value_enum)]
    loss: Option<LossChoice>,
    /// The teacher of `--recipe distill`, `progressive` or `tuning`: a checkpoint of `cm train --recipe teacher`, or a distilled run (which carries its teacher).
    #[arg(long)]
    teacher: Option<PathBuf>,
    /// The teacher's ODE solver for `--recipe distill`: heun or euler.
    #[arg(long, default_value = "heun")]
    solver: String,
    /// Override the recipe's curriculum start s0.
    #[arg(long)]
    s0: Option<usize>,
    /// Override the recipe's curriculum end s1.
    #[arg(long)]
    s1: Option<usize>,
    /// For --recipe distill: N, the points of the fixed time grid (the paper's 18).
    #[arg(long)]
    distill_n: Option<usize>,
    /// For --recipe distill from a class-conditional teacher: its classifier-free guidance
    /// weight w >= 1 (1: none), built into the student.
    #[arg(long)]
    guidance: Option<f64>,
    /// A class-conditional network (section 8): it also takes the digit, so `cm sample
    /// --digit` can ask for one. (A distillation inherits its teacher's choice.)
    #[arg(long)]
    conditional: bool,
    /// Start from the weights (the sampling EMA) of this checkpoint, matched by parameter name:
    /// e.g. a --conditional teacher from an unconditional one, whose label embedding then
    /// starts at zero.
    #[arg(long)]
    init: Option<PathBuf>,
    /// For --conditional: the probability that a training digit's label is dropped, so the
    /// network also learns to sample without one.
    #[arg(long)]
    label_dropout: Option<f32>,
    #[arg(long, default_value_t = 64)]
    batch: usize,
    /// Adam's learning rate (default: the recipe's, 2e-4).
    #[arg(long)]
    lr: Option<f32>,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// The checkpoint to write (and, with --resume, to continue from).
    #[arg(long, default_value = "runs/model.safetensors")]
    out: PathBuf,
    /// Continue the run saved in --out, with its own config and recipe.
    #[arg(long)]
    resume: bool,
    #[arg(long, value_enum, default_value = "gpu")]
    pub backend: BackendChoice,
    /// Read the (mean) loss back every this many steps.
    #[arg(long, default_value_t = 25)]
    loss_every: u32,
    /// Write the checkpoint every this many steps (and at the end).
    #[arg(long, default_value_t = 250)]
    checkpoint_every: u32,
    /// Stop cleanly after this many minutes of training, with a checkpoint, even before
    /// --steps: a session with a deadline ends its segment of a longer run (scripts/continue-run)
    /// and the next one continues it with --resume.
    #[arg(long)]
    max_minutes: Option<f64>,
    /// Measure the MNIST-FID of the sampling EMA every this many steps (0: never), one-step
    /// samples for a consistency model and the current student's steps for a progressive
    /// distillation, into <out>.fid.csv: the curves of "FID over training".
    #[arg(long, default_value_t = 0)]
    fid_every: u32,
    /// Samples per FID measurement during training.
    #[arg(long, default_value_t = 1000)]
    fid_count: usize,
    /// Folder with the MNIST IDX files (scripts/fetch-mnist puts them here).
    #[arg(long, default_value = "data/mnist")]
    data: PathBuf,
}

/// The name a value of a flag is written as: the library's name of the value (the recipe and
/// loss choices exist here only for their help texts).
fn flag_name(value: impl ValueEnum) -> String {
    value.to_possible_value().expect("no value is hidden").get_name().to_owned()
}

fn config_from_args(args: &Args) -> consistency::Result<TrainConfig> {
    let mut kind = RecipeKind::parse(&flag_name(args.recipe))?;
    if let RecipeKind::Distillation { solver } = &mut kind {
        *solver = Solver::parse(&args.solver)?;
    }
    Recipe {
        kind,
        total_steps: args.total_steps.unwrap_or(args.steps),
        loss: args.loss.map(|loss| LossKind::parse(&flag_name(loss))).transpose()?,
        s0: args.s0,
        s1: args.s1,
        label_dropout: args.label_dropout,
        distill_n: args.distill_n,
        guidance: args.guidance,
        batch: args.batch,
        lr: args.lr,
        seed: args.seed,
    }
    .config()
}

/// The run `args` asks for at its first step: continued from --out, started from --teacher, or
/// fresh (optionally from --init's weights).
fn first_state(args: &Args) -> consistency::Result<Checkpoint> {
    if args.resume {
        if !args.out.exists() {
            return Err(Error::Invalid(format!(
                "--resume: {} does not exist, so there is no run to continue (drop --resume to start one)",
                args.out.display()
            )));
        }
        let saved = load_checkpoint(&args.out)?;
        eprintln!("resuming {} at step {}", args.out.display(), saved.step);
        return Ok(saved);
    }
    if args.out.exists() {
        return Err(Error::Invalid(format!(
            "{} exists: pass --resume to continue it, or choose another --out",
            args.out.display()
        )));
    }
    let config = config_from_args(args)?;
    if args.label_dropout.is_some() && !args.conditional {
        return Err(Error::Invalid("--label-dropout is for a --conditional network".into()));
    }
    match (&args.teacher, config.objective.needs_teacher()) {
        (Some(path), true) => {
            if args.conditional || args.init.is_some() {
                return Err(Error::Invalid(
                    "this run starts from its teacher, and is conditional exactly when it is: drop --conditional and --init".into(),
                ));
            }
            // A distilled run carries its teacher, which serves as well as the teacher's own run.
            let run = load_checkpoint(path)?;
            Checkpoint::from_teacher(&run.diffusion_teacher().unwrap_or(run), config)
        }
        (None, false) => {
            let classes = if args.conditional { CLASSES } else { 0 };
            let mut start = Checkpoint::start(Widths::parse(&args.config)?, classes, config);
            if let Some(path) = &args.init {
                let from = load_checkpoint(path)?;
                if from.widths != start.widths {
                    return Err(Error::Invalid(format!(
                        "--init {} has widths {:?}, this run {:?}: pass --config to match",
                        path.display(),
                        from.widths.0,
                        start.widths.0
                    )));
                }
                let copied = start.init_from(&from);
                let parameters = start.model().net.layout.params.len();
                eprintln!("started from {} ({copied} of {parameters} parameters)", path.display());
            }
            Ok(start)
        }
        (None, true) => {
            Err(Error::Invalid("--recipe distill, progressive and tuning start from --teacher <checkpoint>".into()))
        }
        (Some(_), false) => Err(Error::Invalid("--teacher is for --recipe distill, progressive or tuning".into())),
    }
}

pub fn run<B: Backend>(be: &B, args: &Args) -> consistency::Result<()> {
    let mnist = Mnist::load_split(&args.data, Split::Train)?;
    let mut trainer = Trainer::resume(be, &first_state(args)?, &mnist.images, &mnist.labels);
    eprintln!("backend: {}", be.name());
    eprintln!("recipe: {:?} {}", trainer.model.net.widths, trainer.config.describe());
    let log_path = args.out.with_extension("csv");
    let mut log = String::new();
    if trainer.step == 0 || !log_path.exists() {
        // seconds: since this invocation started (a resumed run starts again from 0).
        log.push_str("step,loss,discretization,seconds\n");
    }

    let bar = ProgressBar::new(args.steps as u64).with_position(trainer.step as u64);
    bar.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} ETA {eta} {msg}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    let interactive = std::io::stderr().is_terminal();
    let fid = match args.fid_every {
        0 => None,
        _ => {
            let evaluator = Evaluator::shipped(be)?;
            let test = Mnist::load_split(&args.data, Split::Test)?;
            let reference = pollster::block_on(evaluator.reference(be, &test))?;
            let path = args.out.with_extension("fid.csv");
            if !path.exists() {
                append(&path, "step,fid,legible,evaluations\n")?;
            }
            Some((evaluator, reference, path))
        }
    };
    let (started, first_step) = (Instant::now(), trainer.step);
    let out_of_time = || args.max_minutes.is_some_and(|m| started.elapsed().as_secs_f64() >= 60.0 * m);
    let (mut loss_sum, mut summed) = (be.zeros(&[1]), 0);
    while trainer.step < args.steps {
        let loss = trainer.step(be);
        let total = be.empty(&[1]);
        be.add(&loss_sum, &loss, &total);
        (loss_sum, summed) = (total, summed + 1);
        bar.inc(1);
        let step = trainer.step;
        let last = step == args.steps || out_of_time();
        if step.is_multiple_of(args.loss_every.max(1)) || last {
            let mean = pollster::block_on(be.read(&loss_sum))?[0] / summed as f32;
            (loss_sum, summed) = (be.zeros(&[1]), 0);
            let n = trainer.config.discretization(step - 1);
            if !mean.is_finite() {
                bar.abandon();
                return Err(Error::Invalid(format!(
                    "the loss became {mean} before step {step}; the last checkpoint ({}) is untouched",
                    args.out.display()
                )));
            }
            let seconds = started.elapsed().as_secs_f64();
            let rate = (step - first_step) as f64 / seconds;
            log.push_str(&format!("{step},{mean},{n},{seconds:.2}\n"));
            bar.set_message(format!("{rate:.2} steps/s  loss {mean:.5}  N {n}"));
            if !interactive {
                eprintln!("step {step}/{} loss {mean:.5} N {n} {rate:.2} steps/s", args.steps);
            }
        }
        if let Some((evaluator, reference, path)) = &fid {
            if step.is_multiple_of(args.fid_every) {
                let sampler = trainer.quality_sampler()?;
                let images =
                    pollster::block_on(sampler.draw(be, &trainer.model, &trainer.ema, args.fid_count, 0, None))?;
                let quality = pollster::block_on(evaluator.classify_host(be, &images))
                    .and_then(|c| Quality::new(&c, reference))?;
                let line = format!("{step},{:.3},{:.4},{}\n", quality.fid, quality.legible, sampler.evaluations());
                append(path, &line)?;
            }
        }
        if step.is_multiple_of(args.checkpoint_every.max(1)) || last {
            let bytes = pollster::block_on(trainer.checkpoint(be))?.to_bytes()?;
            write_atomically(&args.out, &bytes)?;
            append(&log_path, &log)?;
            log.clear();
        }
        if last {
            break;
        }
    }
    bar.finish();
    eprintln!(
        "step {} of {} after {} steps in {:.1} s; checkpoint {}, loss log {}",
        trainer.step,
        args.steps,
        trainer.step - first_step,
        started.elapsed().as_secs_f64(),
        args.out.display(),
        log_path.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_flag_value_is_a_name_of_the_library() {
        for &recipe in RecipeChoice::value_variants() {
            RecipeKind::parse(&flag_name(recipe)).unwrap();
        }
        for &loss in LossChoice::value_variants() {
            LossKind::parse(&flag_name(loss)).unwrap();
        }
    }
}
