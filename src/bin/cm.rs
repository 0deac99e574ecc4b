//! `cm`: the native command line. A leaf: it parses arguments, calls the library, prints.

use std::time::Instant;

use clap::{Parser, Subcommand, ValueEnum};
use consistency::backend::cpu::CpuBackend;
use consistency::backend::gpu::GpuBackend;
use consistency::backend::Backend;
use consistency::bench;
use consistency::nn::{UNet, Widths};

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

#[derive(Subcommand)]
enum Command {
    /// Show the GPU adapter wgpu picks and the network sizes.
    Info,
    /// Engine benchmark: GFLOP/s of the convolution kernels (forward and both backwards) and
    /// the time of a whole-network forward + backward for each width config.
    Bench {
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
}

fn main() {
    if let Err(e) = run(Cli::parse()) {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> consistency::Result<()> {
    match cli.command {
        Command::Info => {
            let gpu = GpuBackend::new_blocking()?;
            let a = &gpu.context().adapter;
            println!("adapter: {a}{}", if a.is_fallback { " [software fallback]" } else { "" });
            for (name, w) in [("tiny", Widths::TINY), ("small", Widths::SMALL), ("base", Widths::BASE)] {
                println!("{name:>5} {:?}: {} parameters", w.0, UNet::new(w).layout.count());
            }
            Ok(())
        }
        Command::Bench { backend, batch, configs, iters, conv_config } => {
            let configs: Vec<Widths> = configs.split('/').map(Widths::parse).collect::<Result<_, _>>()?;
            let convs = bench::network_convs(Widths::parse(&conv_config)?, batch);
            if backend != Which::Cpu {
                bench_on(&GpuBackend::new_blocking()?, &convs, &configs, batch, iters)?;
            }
            if backend != Which::Gpu {
                bench_on(&CpuBackend::new(), &convs, &configs, batch, iters)?;
            }
            Ok(())
        }
    }
}

fn bench_on<B: Backend>(
    be: &B,
    convs: &[(String, consistency::backend::Conv2d)],
    configs: &[Widths],
    batch: usize,
    iters: usize,
) -> consistency::Result<()> {
    let origin = Instant::now();
    let now = move || origin.elapsed().as_secs_f64();
    println!("backend: {}", be.name());
    println!("convolutions at batch {batch}, GFLOP/s (forward / backward input / backward weight):");
    for t in pollster::block_on(bench::bench_convs(be, convs, iters, &now))? {
        println!(
            "  {:<24} {:>8.2} {:>8.2} {:>8.2}   ({:.2} GFLOP each)",
            t.label,
            t.forward,
            t.backward_input,
            t.backward_weight,
            t.geometry.flops() / 1e9
        );
    }
    println!("whole network forward + backward at batch {batch}:");
    for &w in configs {
        let seconds = pollster::block_on(bench::bench_network(be, w, batch, iters, &now))?;
        println!("  {:<14} {:>9.1} ms   ({:.0} images/s)", format!("{:?}", w.0), seconds * 1e3, batch as f64 / seconds);
    }
    Ok(())
}
