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
    /// Benchmark: GFLOP/s of the convolution kernels (forward and both backwards), and for each
    /// width config the time of a network forward + backward, of a consistency-training step,
    /// and of one-step and two-step sampling.
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
            let seconds = pollster::block_on(bench::bench_train_step(be, w, batch, iters, &now))?;
            println!("  {:<14} {:>9.1} ms   ({:.2} steps/s)", label(w), seconds * 1e3, 1.0 / seconds);
        }
    }
    if plan.parts.contains(&"sample") {
        println!("sampling {batch} digits (1 step / 2 steps):");
        for &w in &plan.configs {
            let one = pollster::block_on(bench::bench_sampling(be, w, batch, 1, iters, &now))?;
            let two = pollster::block_on(bench::bench_sampling(be, w, batch, 2, iters, &now))?;
            println!("  {:<14} {:>9.1} ms {:>9.1} ms", label(w), one * 1e3, two * 1e3);
        }
    }
    Ok(())
}
