//! `cm bench`: kernel GFLOP/s and network, training-step and sampling times on one or both
//! backends.

use std::time::Instant;

use clap::ValueEnum;
use consistency::backend::cpu::CpuBackend;
use consistency::backend::gpu::GpuBackend;
use consistency::backend::{Backend, Conv2d};
use consistency::bench;
use consistency::nn::Widths;

#[derive(Clone, Copy, PartialEq, ValueEnum)]
enum Which {
    Gpu,
    Cpu,
    Both,
}

#[derive(clap::Args)]
pub struct Args {
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
}

pub fn run(args: &Args) -> consistency::Result<()> {
    let parts: Vec<&str> = args.parts.split(',').collect();
    if let Some(bad) = parts.iter().find(|p| !["convs", "network", "train", "sample"].contains(p)) {
        return Err(consistency::Error::Invalid(format!("unknown bench part '{bad}'")));
    }
    let configs: Vec<Widths> = args.configs.split('/').map(Widths::parse).collect::<Result<_, _>>()?;
    let convs = bench::network_convs(Widths::parse(&args.conv_config)?, args.batch);
    let plan = Plan { parts, convs, configs, batch: args.batch, iters: args.iters };
    if args.backend != Which::Cpu {
        bench_on(&GpuBackend::new_blocking()?, &plan)?;
    }
    if args.backend != Which::Gpu {
        bench_on(&CpuBackend::new(), &plan)?;
    }
    Ok(())
}

struct Plan<'a> {
    parts: Vec<&'a str>,
    convs: Vec<(String, Conv2d)>,
    configs: Vec<Widths>,
    batch: usize,
    iters: usize,
}

fn bench_on<B: Backend>(be: &B, plan: &Plan) -> consistency::Result<()> {
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
