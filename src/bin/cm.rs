//! `cm`: the native command line. A leaf: it parses arguments, calls the library, prints.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::{Args, Parser, Subcommand, ValueEnum};
use consistency::backend::cpu::CpuBackend;
use consistency::backend::gpu::GpuBackend;
use consistency::backend::Backend;
use consistency::checkpoint::Checkpoint;
use consistency::data::mnist::{Mnist, Split, CLASSES};
use consistency::eval::classifier::Architecture;
use consistency::model::{Model, Preconditioning};
use consistency::nn::{UNet, Widths};
use consistency::ode::Solver;
use consistency::sample::Sampler;
use consistency::train::{LossKind, Objective, Recipe, RecipeKind, TrainConfig, Trainer};
use consistency::{bench, image, Error};
use indicatif::{ProgressBar, ProgressStyle};
use npyz::WriterBuilder;

#[derive(Parser)]
#[command(name = "cm", about = "Consistency models on hand-written WGSL kernels", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, PartialEq, ValueEnum)]
enum Which {
    Gpu,
    Cpu,
    Both,
}

/// One backend, for commands that run on one.
#[derive(Clone, Copy, PartialEq, ValueEnum)]
enum BackendChoice {
    Gpu,
    Cpu,
}

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
enum NetworkChoice {
    /// The MNIST-FID classifier.
    Fid,
    /// The perceptual distance's feature network.
    Perceptual,
}

#[derive(Clone, Copy, PartialEq, ValueEnum)]
enum LossChoice {
    L2,
    L1,
    PseudoHuber,
    /// The LPIPS-style distance on a frozen digit network (section 9).
    Perceptual,
}

#[derive(Args)]
struct TrainArgs {
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
    /// The teacher of `--recipe distill`, `progressive` or `tuning`: a checkpoint of `cm train --recipe teacher`.
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
    backend: BackendChoice,
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

#[derive(Args)]
struct SampleArgs {
    /// A checkpoint written by `cm train`.
    #[arg(long)]
    checkpoint: PathBuf,
    #[arg(long, default_value_t = 64)]
    count: usize,
    /// Refinement times after the first step from T = 80, descending, e.g. 0.8 (Algorithm 1).
    /// None: one-step sampling.
    #[arg(long, value_delimiter = ',')]
    time_points: Vec<f64>,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// A teacher's ODE solver (section 1): heun or euler.
    #[arg(long, default_value = "heun")]
    solver: String,
    /// A teacher's solver steps on the Karras grid (Heun: 2 steps - 1 evaluations).
    #[arg(long, default_value_t = 18)]
    steps: usize,
    /// The digit to draw, for a class-conditional model (default: any).
    #[arg(long)]
    digit: Option<u8>,
    /// A class-conditional teacher's classifier-free guidance weight (1: none) for --digit.
    #[arg(long, default_value_t = 1.0)]
    guidance: f64,
    /// Sample with the online weights instead of the sampling EMA.
    #[arg(long)]
    online: bool,
    /// PNG grid of the samples.
    #[arg(long, default_value = "samples.png")]
    out: PathBuf,
    /// Also write the samples [count, 1, 28, 28] as float32 .npy: the network's raw outputs,
    /// which can leave the digits' range [-1, 1] (the PNG is clamped); see --clamp.
    #[arg(long)]
    npy: Option<PathBuf>,
    /// Clamp the .npy values to [-1, 1], as the PNG and `cm eval` do.
    #[arg(long)]
    clamp: bool,
    #[arg(long, value_enum, default_value = "gpu")]
    backend: BackendChoice,
}

#[derive(Args)]
struct EvalArgs {
    /// A checkpoint written by `cm train` (not needed with --scale-only).
    #[arg(long, required_unless_present = "scale_only")]
    checkpoint: Option<PathBuf>,
    /// Samples per measurement (the MNIST-FID convention is 10,000).
    #[arg(long, default_value_t = 10_000)]
    count: usize,
    /// For a consistency model, the multistep samplers to measure (Algorithm 1): groups of
    /// refinement times after the first step from 80, separated by ';' (an empty group is
    /// one-step sampling). The default measures 1 step and 2 steps (80, 0.8).
    #[arg(long, default_value = ";0.8", allow_hyphen_values = true)]
    time_points: String,
    /// For a diffusion teacher, the samplers to measure instead: solver:steps pairs (Heun takes
    /// 2 steps - 1 evaluations, Euler one per step).
    #[arg(long, value_delimiter = ',', default_value = "heun:18,euler:18")]
    ode: Vec<String>,
    /// A class-conditional teacher's classifier-free guidance weight (1: none) when asked for
    /// each digit.
    #[arg(long, default_value_t = 1.0)]
    guidance: f64,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Also measure the scale: real train digits, blurred test digits and noise vs the test digits.
    #[arg(long)]
    scale: bool,
    /// Only the scale, no checkpoint.
    #[arg(long)]
    scale_only: bool,
    /// Also print a markdown table row with this label (used by scripts/compare-recipes).
    #[arg(long)]
    markdown: Option<String>,
    /// Append one CSV row per sampler (label, sampler, evaluations, FID, class entropy,
    /// seconds) to this file, labelled with --markdown's label (scripts/compare-samplers).
    #[arg(long)]
    csv: Option<PathBuf>,
    #[arg(long, default_value = "data/mnist")]
    data: PathBuf,
    #[arg(long, value_enum, default_value = "gpu")]
    backend: BackendChoice,
}

#[derive(Subcommand)]
enum Command {
    /// Sample quality of a checkpoint: MNIST-FID, class histogram and entropy of one-step and
    /// two-step samples, next to the scale of real, blurred and noise digits.
    Eval(EvalArgs),
    /// Consistency training on MNIST, with a progress bar and checkpoints.
    Train(TrainArgs),
    /// Digits from a checkpoint: one step from noise, or more with --time-points.
    Sample(SampleArgs),
    /// Show the GPU adapter wgpu picks and the network sizes, or what a checkpoint holds.
    Info {
        /// Instead: a checkpoint's step, widths and recipe (no GPU needed).
        #[arg(long)]
        checkpoint: Option<PathBuf>,
    },
    /// Benchmark: GFLOP/s of the convolution kernels (forward and both backwards), and for each
    /// width config the time of a network forward + backward, of a consistency-training step,
    /// and of one-step and two-step sampling. Ours only: `scripts/bench-native` runs it beside
    /// the PyTorch twin in bench/ and prints the ratios.
    Bench {
        /// What to measure: any of convs, network, train, sample, separated by ','.
        #[arg(long, default_value = "convs,network,train,sample")]
        parts: String,
        /// Which backend(s) to measure.
        #[arg(long, value_enum, default_value = "gpu")]
        backend: Which,
        /// Batch size.
        #[arg(long, default_value_t = 64)]
        batch: usize,
        /// Width configs: tiny, small, base or C0,C1,C2; separated by '/'.
        #[arg(long, default_value = "tiny/small/base")]
        configs: String,
        /// Timed runs per measurement (after one warm-up run).
        #[arg(long, default_value_t = 3)]
        iters: usize,
        /// Convolution shapes are those of this config.
        #[arg(long, default_value = "small")]
        conv_config: String,
    },
    /// Draw the paper's figures (docs/figures/*.png) and their table from recorded runs'
    /// logs (`scripts/paper-figures` records them in docs/figures/data).
    Plot {
        /// The logs: <run>.fid.csv files and results.csv.
        #[arg(long, default_value = "docs/figures/data")]
        data: PathBuf,
        /// Where the PNG charts and table.md go.
        #[arg(long, default_value = "docs/figures")]
        out: PathBuf,
    },
    /// Train an MNIST classifier (`consistency::eval::classifier`) and write its weights as
    /// safetensors: the MNIST-FID network (shipped as assets/mnist-classifier.safetensors) or
    /// the perceptual distance's (assets/mnist-perceptual.safetensors, `--network perceptual
    /// --seed 1`).
    TrainClassifier {
        /// Which network: fid or perceptual.
        #[arg(long, value_enum, default_value = "fid")]
        network: NetworkChoice,
        /// Where to write the weights.
        #[arg(long)]
        out: PathBuf,
        /// Training steps.
        #[arg(long, default_value_t = 3000)]
        steps: u32,
        /// Batch size.
        #[arg(long, default_value_t = 64)]
        batch: usize,
        /// Peak learning rate (linear warm-up, cosine decay).
        #[arg(long, default_value_t = 3e-3)]
        lr: f32,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Directory with the MNIST IDX files.
        #[arg(long, default_value = "data/mnist")]
        data: PathBuf,
        #[arg(long, value_enum, default_value = "cpu")]
        backend: BackendChoice,
    },
    /// Teach the FID classifier to say "no digit": refit its last layer on MNIST digits, noise,
    /// blobs and blends of two digits (outlier exposure), so that legibility (the share read
    /// with p >= 0.9) rewards digits, not blobs; the features, and so the MNIST-FID, stay as
    /// they are. Prints what held-out digits and outliers are read as, before and after.
    CalibrateClassifier {
        /// The weights to start from (default: the shipped ones).
        #[arg(long)]
        weights: Option<PathBuf>,
        /// Where to write the calibrated weights.
        #[arg(long)]
        out: PathBuf,
        /// Directory with the MNIST IDX files.
        #[arg(long, default_value = "data/mnist")]
        data: PathBuf,
    },
}

fn main() {
    if let Err(e) = run(Cli::parse()) {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> consistency::Result<()> {
    match cli.command {
        Command::Train(args) => match args.backend {
            BackendChoice::Gpu => train(&working_gpu()?, &args),
            BackendChoice::Cpu => train(&CpuBackend::new(), &args),
        },
        Command::Eval(args) => match args.backend {
            BackendChoice::Gpu => eval(&working_gpu()?, &args),
            BackendChoice::Cpu => eval(&CpuBackend::new(), &args),
        },
        Command::Sample(args) => match args.backend {
            BackendChoice::Gpu => sample(&working_gpu()?, &args),
            BackendChoice::Cpu => sample(&CpuBackend::new(), &args),
        },
        Command::Info { checkpoint: Some(path) } => {
            let saved = load_checkpoint(&path)?;
            println!("{}: step {}, {:?} {}", path.display(), saved.step, saved.widths, saved.config.describe());
            Ok(())
        }
        Command::Info { checkpoint: None } => {
            let gpu = GpuBackend::new_blocking()?;
            let a = &gpu.context().adapter;
            println!("adapter: {a}{}", if a.is_fallback { " [software fallback]" } else { "" });
            for (name, w) in [("tiny", Widths::TINY), ("small", Widths::SMALL), ("base", Widths::BASE)] {
                println!("{name:>5} {:?}: {} parameters", w.0, UNet::new(w).layout.count());
            }
            Ok(())
        }
        Command::Bench { parts, backend, batch, configs, iters, conv_config } => {
            let parts: Vec<&str> = parts.split(',').collect();
            if let Some(bad) = parts.iter().find(|p| !["convs", "network", "train", "sample"].contains(p)) {
                return Err(consistency::Error::Invalid(format!("unknown bench part '{bad}'")));
            }
            let configs: Vec<Widths> = configs.split('/').map(Widths::parse).collect::<Result<_, _>>()?;
            let convs = bench::network_convs(Widths::parse(&conv_config)?, batch);
            let plan = BenchPlan { parts, convs, configs, batch, iters };
            if backend != Which::Cpu {
                bench_on(&GpuBackend::new_blocking()?, &plan)?;
            }
            if backend != Which::Gpu {
                bench_on(&CpuBackend::new(), &plan)?;
            }
            Ok(())
        }
        Command::Plot { data, out } => plot(&data, &out),
        Command::TrainClassifier { network, out, steps, batch, lr, seed, data, backend } => {
            let config = consistency::eval::classifier::TrainConfig { steps, batch, lr, seed };
            let architecture = match network {
                NetworkChoice::Fid => Architecture::FID,
                NetworkChoice::Perceptual => Architecture::PERCEPTUAL,
            };
            match backend {
                BackendChoice::Gpu => train_classifier(&GpuBackend::new_blocking()?, architecture, config, &data, &out),
                BackendChoice::Cpu => train_classifier(&CpuBackend::new(), architecture, config, &data, &out),
            }
        }
        Command::CalibrateClassifier { weights, out, data } => calibrate_classifier(weights.as_deref(), &data, &out),
    }
}

struct BenchPlan<'a> {
    parts: Vec<&'a str>,
    convs: Vec<(String, consistency::backend::Conv2d)>,
    configs: Vec<Widths>,
    batch: usize,
    iters: usize,
}

fn bench_on<B: Backend>(be: &B, plan: &BenchPlan) -> consistency::Result<()> {
    let origin = Instant::now();
    let now = move || origin.elapsed().as_secs_f64();
    let (batch, iters) = (plan.batch, plan.iters);
    let label = |w: Widths| format!("{:?}", w.0);
    println!("backend: {}", be.name());
    if plan.parts.contains(&"convs") {
        println!("convolutions at batch {batch}, GFLOP/s (forward / backward input / backward weight):");
        for t in pollster::block_on(bench::bench_convs(be, &plan.convs, iters, &now))? {
            println!(
                "  {:<24} {:>8.2} {:>8.2} {:>8.2}   ({:.2} GFLOP each)",
                t.label,
                t.forward,
                t.backward_input,
                t.backward_weight,
                t.geometry.flops() / 1e9
            );
        }
    }
    if plan.parts.contains(&"network") {
        println!("network forward + backward at batch {batch}:");
        for &w in &plan.configs {
            let seconds = pollster::block_on(bench::bench_network(be, w, batch, iters, &now))?;
            println!("  {:<14} {:>9.1} ms   ({:.0} images/s)", label(w), seconds * 1e3, batch as f64 / seconds);
        }
    }
    if plan.parts.contains(&"train") {
        println!("consistency-training step (improved CT) at batch {batch}:");
        for &w in &plan.configs {
            let cost = pollster::block_on(bench::bench_train_step(be, w, batch, iters, &now))?;
            let seconds = cost.seconds;
            println!(
                "  {:<14} {:>9.1} ms   ({:.2} steps/s){}",
                label(w),
                seconds * 1e3,
                1.0 / seconds,
                work(&cost, "step")
            );
        }
    }
    if plan.parts.contains(&"sample") {
        println!("sampling {batch} digits (1 step / 2 steps):");
        for &w in &plan.configs {
            let one = pollster::block_on(bench::bench_sampling(be, w, batch, 1, iters, &now))?;
            let two = pollster::block_on(bench::bench_sampling(be, w, batch, 2, iters, &now))?;
            println!(
                "  {:<14} {:>9.1} ms {:>9.1} ms{}",
                label(w),
                one.seconds * 1e3,
                two.seconds * 1e3,
                work(&one, "1-step batch")
            );
        }
    }
    Ok(())
}

/// ", N dispatches and M queue submissions per `what`" on a backend that counts them.
fn work(cost: &bench::RunCost, what: &str) -> String {
    match (cost.dispatches, cost.submissions) {
        (Some(d), Some(s)) => format!("   {d:.0} dispatches, {s:.2} queue submissions per {what}"),
        _ => String::new(),
    }
}

/// The GPU backend, with a warning when wgpu's adapter is a CPU emulation (lavapipe,
/// SwiftShader), on which the CPU backend is about a hundred times faster.
fn working_gpu() -> consistency::Result<GpuBackend> {
    let gpu = GpuBackend::new_blocking()?;
    let adapter = &gpu.context().adapter;
    if adapter.is_fallback {
        eprintln!("warning: the GPU adapter is a CPU emulation ({}); --backend cpu is far faster here", adapter.name);
    }
    Ok(gpu)
}

fn io_error(path: &Path, e: std::io::Error) -> Error {
    Error::Invalid(format!("{}: {e}", path.display()))
}

fn load_checkpoint(path: &Path) -> consistency::Result<Checkpoint> {
    let bytes = std::fs::read(path).map_err(|e| io_error(path, e))?;
    Checkpoint::from_bytes(&bytes).map_err(|e| Error::Invalid(format!("{}: {e}", path.display())))
}

/// Writes next to `path` and renames, so a crash mid-write never loses the previous checkpoint.
fn write_atomically(path: &Path, bytes: &[u8]) -> consistency::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| io_error(dir, e))?;
    }
    let partial = path.with_extension("partial");
    std::fs::write(&partial, bytes).map_err(|e| io_error(&partial, e))?;
    std::fs::rename(&partial, path).map_err(|e| io_error(path, e))
}

fn config_from_args(args: &TrainArgs) -> consistency::Result<TrainConfig> {
    Recipe {
        kind: match args.recipe {
            RecipeChoice::Improved => RecipeKind::Improved,
            RecipeChoice::Original => RecipeKind::Original,
            RecipeChoice::Teacher => RecipeKind::Teacher,
            RecipeChoice::Distill => RecipeKind::Distillation { solver: Solver::parse(&args.solver)? },
            RecipeChoice::Progressive => RecipeKind::Progressive,
            RecipeChoice::Tuning => RecipeKind::Tuning,
        },
        total_steps: args.total_steps.unwrap_or(args.steps),
        loss: args.loss.map(|loss| match loss {
            LossChoice::L2 => LossKind::L2,
            LossChoice::L1 => LossKind::L1,
            LossChoice::PseudoHuber => LossKind::PseudoHuber,
            LossChoice::Perceptual => LossKind::Perceptual,
        }),
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

fn train<B: Backend>(be: &B, args: &TrainArgs) -> consistency::Result<()> {
    let mnist = Mnist::load_split(&args.data, Split::Train)?;
    if args.resume && !args.out.exists() {
        return Err(Error::Invalid(format!(
            "--resume: {} does not exist, so there is no run to continue (drop --resume to start one)",
            args.out.display()
        )));
    }
    let mut trainer = if args.resume {
        let saved = load_checkpoint(&args.out)?;
        eprintln!("resuming {} at step {}", args.out.display(), saved.step);
        Trainer::resume(be, &saved, &mnist.images, &mnist.labels)
    } else {
        if args.out.exists() && !args.resume {
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
                let teacher = load_checkpoint(path)?;
                Trainer::resume(be, &Checkpoint::from_teacher(&teacher, config)?, &mnist.images, &mnist.labels)
            }
            (None, false) => {
                let classes = if args.conditional { CLASSES } else { 0 };
                let model = config.objective.model(Widths::parse(&args.config)?, classes);
                let mut init = model.net.layout.init(config.seed);
                if let Some(path) = &args.init {
                    let from = load_checkpoint(path)?;
                    if from.widths != model.net.widths {
                        return Err(Error::Invalid(format!(
                            "--init {} has widths {:?}, this run {:?}: pass --config to match",
                            path.display(),
                            from.widths.0,
                            model.net.widths.0
                        )));
                    }
                    let copied = model.net.layout.copy_matching(&mut init, &from.model().net.layout, from.ema());
                    eprintln!(
                        "started from {} ({copied} of {} parameters)",
                        path.display(),
                        model.net.layout.params.len()
                    );
                }
                Trainer::new(be, model, config, &init, &mnist.images, &mnist.labels)
            }
            (None, true) => {
                return Err(Error::Invalid(
                    "--recipe distill, progressive and tuning start from --teacher <checkpoint>".into(),
                ))
            }
            (Some(_), false) => {
                return Err(Error::Invalid("--teacher is for --recipe distill, progressive or tuning".into()))
            }
        }
    };
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
            let evaluator = consistency::eval::Evaluator::shipped(be)?;
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
                // The diffusion teacher and a progressive student sample by Euler steps (the
                // student's own count; the teacher's 18), a consistency model in one step.
                let steps = match trainer.config.objective {
                    Objective::Progressive { .. } => trainer.config.student_steps(step - 1),
                    _ => 18,
                };
                let sampler = Sampler::for_model(&trainer.model, &[], "euler", steps)?;
                let images = draw(be, &trainer.model, &trainer.ema, &sampler, args.fid_count, 0, None)?;
                let quality = pollster::block_on(evaluator.classify_host(be, &images))
                    .and_then(|c| consistency::eval::Quality::new(&c, reference))?;
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

fn append(path: &Path, text: &str) -> consistency::Result<()> {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new().create(true).append(true).open(path).map_err(|e| io_error(path, e))?;
    file.write_all(text.as_bytes()).map_err(|e| io_error(path, e))
}

fn sample<B: Backend>(be: &B, args: &SampleArgs) -> consistency::Result<()> {
    let saved = load_checkpoint(&args.checkpoint)?;
    let model = saved.model();
    let weights = if args.online { &saved.states[0] } else { saved.ema() };
    let params = be.upload(weights, &[weights.len()]);
    let sampler = Sampler::for_model(&model, &args.time_points, &args.solver, args.steps)?
        .with_guidance(&model, args.guidance)?;
    let started = Instant::now();
    let x = sampler.sample(be, &model, &params, 0..args.count, args.seed, args.digit)?;
    let values = pollster::block_on(be.read(&x))?;
    let of_digit = args.digit.map(|d| format!(" of digit {d}")).unwrap_or_default();
    eprintln!(
        "{} samples{of_digit}, {}, in {:.2} s on {}",
        args.count,
        sampler.describe(),
        started.elapsed().as_secs_f64(),
        be.name()
    );
    let columns = (args.count as f64).sqrt().ceil() as usize;
    let png = image::grid_png(&image::to_gray(&values), columns, 2)?;
    write_atomically(&args.out, &png)?;
    eprintln!("wrote {}", args.out.display());
    if let Some(path) = &args.npy {
        let mut bytes = Vec::new();
        let mut writer = npyz::WriteOptions::<f32>::new()
            .default_dtype()
            .shape(&[args.count as u64, 1, 28, 28])
            .writer(&mut bytes)
            .begin_nd()
            .map_err(|e| io_error(path, e))?;
        let clamp = |v: f32| if args.clamp { v.clamp(-1.0, 1.0) } else { v };
        writer.extend(values.iter().map(|&v| clamp(v))).map_err(|e| io_error(path, e))?;
        writer.finish().map_err(|e| io_error(path, e))?;
        write_atomically(path, &bytes)?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

/// `cm plot`: every figure whose logs exist, and the table of their numbers.
fn plot(data: &Path, out: &Path) -> consistency::Result<()> {
    use consistency::figures;
    std::fs::create_dir_all(out).map_err(|e| io_error(out, e))?;
    for figure in figures::paper_figures(data)? {
        let path = out.join(figure.file);
        figures::draw(&figure, &path)?;
        println!("{}: {}", path.display(), figure.title);
    }
    let table = figures::table(data)?;
    let path = out.join("table.md");
    std::fs::write(&path, &table).map_err(|e| io_error(&path, e))?;
    println!("{}:\n{table}", path.display());
    Ok(())
}

/// `cm train-classifier`: trains, reports, measures on the test set, writes the weights.
fn train_classifier<B: Backend>(
    be: &B,
    architecture: Architecture,
    config: consistency::eval::classifier::TrainConfig,
    data: &Path,
    out: &Path,
) -> consistency::Result<()> {
    use consistency::eval::{classifier, weights};
    let (train, test) = (Mnist::load_split(data, Split::Train)?, Mnist::load_split(data, Split::Test)?);
    let net = classifier::Classifier::new(architecture);
    println!("backend: {}", be.name());
    println!("classifier {} ({} parameters), {config:?}", architecture.name, net.layout.count());
    let start = Instant::now();
    let report =
        |step: u32, loss: f32| println!("step {step:>6}  loss {loss:.4}  {:.0} s", start.elapsed().as_secs_f64());
    let (params, info) = pollster::block_on(classifier::train(be, architecture, config, &train, &test, 100, report))?;
    println!("trained in {:.0} s; test accuracy {:.2}%", start.elapsed().as_secs_f64(), 100.0 * info.test_accuracy);
    let bytes = weights::save(&net, &params, &info)?;
    write_atomically(out, &bytes)?;
    println!("wrote {} ({} bytes)", out.display(), bytes.len());
    Ok(())
}

fn calibrate_classifier(weights: Option<&Path>, data: &Path, out: &Path) -> consistency::Result<()> {
    use consistency::eval::{calibrate, weights as files, Evaluator};
    let be = CpuBackend::new();
    let (train, test) = (Mnist::load_split(data, Split::Train)?, Mnist::load_split(data, Split::Test)?);
    let evaluator = match weights {
        Some(path) => Evaluator::from_safetensors(&be, &std::fs::read(path).map_err(|e| io_error(path, e))?, &path.display().to_string())?,
        None => Evaluator::shipped(&be)?,
    };
    let config = calibrate::CalibrationConfig::default();
    println!("{config:?}");
    let start = Instant::now();
    let (flat, readings) = pollster::block_on(calibrate::calibrate(&be, &evaluator, &train, &test, &config))?;
    println!("held-out images, read by the trained head and each refitted one ({:.0} s):", start.elapsed().as_secs_f64());
    for reading in &readings {
        println!("  {reading}");
    }
    let chosen = readings.last().expect("the trained head's reading at least");
    let info = files::WeightsInfo { test_accuracy: chosen.test_accuracy, ..evaluator.info.clone() };
    let bytes = files::save(&evaluator.net, &flat, &info)?;
    write_atomically(out, &bytes)?;
    println!("took outlier weight {}; wrote {} ({} bytes)", chosen.outlier_weight, out.display(), bytes.len());
    Ok(())
}

/// Samples drawn this many at a time, so 10,000 of them fit in memory.
const SAMPLE_CHUNK: usize = 500;

/// `count` samples (of `digit`, for a class-conditional model) clamped to [-1, 1] on the host.
/// Chunk c draws with seed `seed + c << 32`, so the set depends only on seed and count.
fn draw<B: Backend>(
    be: &B,
    model: &Model,
    params: &consistency::backend::BTensor<B>,
    sampler: &Sampler,
    count: usize,
    seed: u64,
    digit: Option<u8>,
) -> consistency::Result<Vec<f32>> {
    let mut out = Vec::with_capacity(count * 784);
    for (c, start) in (0..count).step_by(SAMPLE_CHUNK).enumerate() {
        let n = SAMPLE_CHUNK.min(count - start);
        let x = sampler.sample(be, model, params, 0..n, seed.wrapping_add((c as u64) << 32), digit)?;
        out.extend(pollster::block_on(be.read(&x))?.into_iter().map(|v| v.clamp(-1.0, 1.0)));
    }
    Ok(out)
}

/// The samplers `cm eval` measures: the `--time-points` groups for a consistency model, the
/// `--ode` list for a teacher.
fn eval_samplers(model: &Model, args: &EvalArgs) -> consistency::Result<Vec<Sampler>> {
    if model.preconditioning == Preconditioning::Consistency {
        return args
            .time_points
            .split(';')
            .map(|group| {
                let points = group
                    .split(',')
                    .map(str::trim)
                    .filter(|p| !p.is_empty())
                    .map(|p| p.parse().map_err(|_| Error::Invalid(format!("--time-points: '{p}' is not a time"))))
                    .collect::<consistency::Result<Vec<f64>>>()?;
                Sampler::for_model(model, &points, "", 0)
            })
            .collect();
    }
    args.ode
        .iter()
        .map(|pair| {
            let (solver, steps) = pair
                .split_once(':')
                .and_then(|(s, n)| Some((s, n.parse().ok()?)))
                .ok_or_else(|| Error::Invalid(format!("--ode wants solver:steps pairs like heun:18, not '{pair}'")))?;
            Sampler::for_model(model, &[], solver, steps)?.with_guidance(model, args.guidance)
        })
        .collect()
}

fn eval<B: Backend>(be: &B, args: &EvalArgs) -> consistency::Result<()> {
    use consistency::eval::Evaluator;
    let evaluator = Evaluator::shipped(be)?;
    let test = Mnist::load_split(&args.data, Split::Test)?;
    let reference = pollster::block_on(evaluator.reference(be, &test))?;
    println!("backend: {}", be.name());
    if args.scale || args.scale_only {
        let train = Mnist::load_split(&args.data, Split::Train)?;
        println!("{}", pollster::block_on(evaluator.scale(be, &train, &test, &reference, args.seed))?);
    }
    let Some(path) = &args.checkpoint else { return Ok(()) };
    let saved = load_checkpoint(path)?;
    let model = saved.model();
    let params = be.upload(saved.ema(), &[saved.ema().len()]);
    println!("{}: step {}, {:?} {}", path.display(), saved.step, saved.widths, saved.config.describe());
    let mut row = Vec::new();
    for sampler in eval_samplers(&model, args)? {
        let started = Instant::now();
        let images = draw(be, &model, &params, &sampler, args.count, args.seed, None)?;
        let seconds = started.elapsed().as_secs_f64();
        let quality = pollster::block_on(evaluator.classify_host(be, &images))
            .and_then(|c| consistency::eval::Quality::new(&c, &reference))?;
        println!("  {} ({} samples drawn in {seconds:.1} s): {quality}", sampler.describe(), args.count);
        if let Some(path) = &args.csv {
            append_eval_row(path, args, &sampler, &quality, seconds)?;
        }
        if model.is_conditional() {
            // Section 8's class-conditional sampling: ask for each digit in turn and count how
            // often the classifier sees the digit that was asked for.
            let per_digit = args.count.div_ceil(CLASSES).min(1000);
            let mut agreed = [0usize; CLASSES];
            for digit in 0..CLASSES as u8 {
                let images = draw(be, &model, &params, &sampler, per_digit, args.seed, Some(digit))?;
                let classes = pollster::block_on(evaluator.classify_host(be, &images))?.classes;
                agreed[digit as usize] = classes.iter().filter(|&&c| c == digit).count();
            }
            let total: usize = agreed.iter().sum();
            let share = 100.0 * total as f64 / (per_digit * CLASSES) as f64;
            println!("    asked for each digit ({per_digit} each): the classifier agrees on {share:.1}%, per digit {agreed:?}");
        }
        row.push(quality);
    }
    if let (Some(label), [first, second, ..]) = (&args.markdown, &row[..]) {
        let unbalanced = first.unbalanced_digits();
        let unbalanced = if unbalanced.is_empty() { "none".to_string() } else { format!("{unbalanced:?}") };
        println!(
            "| {label} | {} | {:.1}% | {:.1}% | {:.1} | {:.1} | {:.2} | {unbalanced} |",
            saved.step,
            100.0 * first.legible,
            100.0 * second.legible,
            first.fid,
            second.fid,
            first.class_entropy
        );
    }
    Ok(())
}

/// The columns of `cm eval --csv`: one row per sampler.
const EVAL_CSV_HEADER: &str = "label,sampler,evaluations,fid,legible,class_entropy,shares,count,seconds";

/// Appends `quality`'s row to `cm eval --csv`'s file (labelled with --markdown's label; commas
/// in text become ';', the digit shares in percent are joined by ';'): a missing or empty file
/// gets the header first, a file whose header is another's is refused.
fn append_eval_row(
    path: &Path,
    args: &EvalArgs,
    sampler: &Sampler,
    quality: &consistency::eval::Quality,
    seconds: f64,
) -> consistency::Result<()> {
    let text =
        if path.exists() { std::fs::read_to_string(path).map_err(|e| io_error(path, e))? } else { String::new() };
    if !text.is_empty() {
        if text.lines().next() != Some(EVAL_CSV_HEADER) {
            return Err(Error::Invalid(format!(
                "{}: not a `cm eval --csv` file of this version (its header is not '{EVAL_CSV_HEADER}'): choose \
                 another --csv",
                path.display()
            )));
        }
    } else {
        append(path, &format!("{EVAL_CSV_HEADER}\n"))?;
    }
    let label = args.markdown.as_deref().unwrap_or_default().replace(',', ";");
    let shares = quality.shares().map(|s| format!("{s:.2}")).join(";");
    let line = format!(
        "{label},{},{},{:.3},{:.4},{:.4},{shares},{},{seconds:.1}\n",
        sampler.describe().replace(',', ";"),
        sampler.evaluations(),
        quality.fid,
        quality.legible,
        quality.class_entropy,
        args.count
    );
    append(path, &line)
}
