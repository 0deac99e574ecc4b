//! `cm`: the native command line. A leaf: it parses arguments, calls the library, prints. One
//! module per command; this file holds the command list and sends each to its module.

mod bench;
mod calibrate_classifier;
mod eval;
mod files;
mod info;
mod plot;
mod sample;
mod train;
mod train_classifier;

use clap::{Parser, Subcommand, ValueEnum};
use consistency::backend::cpu::CpuBackend;
use consistency::backend::gpu::GpuBackend;

#[derive(Parser)]
#[command(name = "cm", about = "Consistency models on hand-written WGSL kernels", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// One backend, for commands that run on one.
#[derive(Clone, Copy, PartialEq, ValueEnum)]
enum BackendChoice {
    Gpu,
    Cpu,
}

#[derive(Subcommand)]
enum Command {
    /// Sample quality of a checkpoint: MNIST-FID, class histogram and entropy of one-step and
    /// two-step samples, next to the scale of real, blurred and noise digits.
    Eval(eval::Args),
    /// Consistency training on MNIST, with a progress bar and checkpoints.
    Train(train::Args),
    /// Digits from a checkpoint: one step from noise, or more with --time-points.
    Sample(sample::Args),
    /// Show the GPU adapter wgpu picks and the network sizes, or what a checkpoint holds.
    Info(info::Args),
    /// Benchmark: GFLOP/s of the convolution kernels (forward and both backwards), and for each
    /// width config the time of a network forward + backward, of a consistency-training step,
    /// and of one-step and two-step sampling. Ours only: `scripts/bench-native` runs it beside
    /// the PyTorch twin in bench/ and prints the ratios.
    Bench(bench::Args),
    /// Draw the paper's figures (docs/figures/*.png) and their table from recorded runs'
    /// logs (`scripts/paper-figures` records them in docs/figures/data).
    Plot(plot::Args),
    /// Train an MNIST classifier (`consistency::train::classifier`) and write its weights as
    /// safetensors: the MNIST-FID network (shipped as assets/mnist-classifier.safetensors) or
    /// the perceptual distance's (assets/mnist-perceptual.safetensors, `--network perceptual
    /// --seed 1`).
    TrainClassifier(train_classifier::Args),
    /// Teach the FID classifier to say "no digit": refit its last layer on MNIST digits, noise,
    /// blobs and blends of two digits (outlier exposure), so that legibility (the share read
    /// with p >= 0.9) rewards digits, not blobs; the features, and so the MNIST-FID, stay as
    /// they are. Prints what held-out digits and outliers are read as by each fit.
    CalibrateClassifier(calibrate_classifier::Args),
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
            BackendChoice::Gpu => train::run(&working_gpu()?, &args),
            BackendChoice::Cpu => train::run(&CpuBackend::new(), &args),
        },
        Command::Eval(args) => match args.backend {
            BackendChoice::Gpu => eval::run(&working_gpu()?, &args),
            BackendChoice::Cpu => eval::run(&CpuBackend::new(), &args),
        },
        Command::Sample(args) => match args.backend {
            BackendChoice::Gpu => sample::run(&working_gpu()?, &args),
            BackendChoice::Cpu => sample::run(&CpuBackend::new(), &args),
        },
        Command::Info(args) => info::run(&args),
        Command::Bench(args) => bench::run(&args),
        Command::Plot(args) => plot::run(&args),
        Command::TrainClassifier(args) => match args.backend {
            BackendChoice::Gpu => train_classifier::run(&GpuBackend::new_blocking()?, &args),
            BackendChoice::Cpu => train_classifier::run(&CpuBackend::new(), &args),
        },
        Command::CalibrateClassifier(args) => calibrate_classifier::run(&args),
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
