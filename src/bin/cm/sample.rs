//! `cm sample`: digits from a checkpoint as a PNG grid, and optionally as .npy.

use std::path::PathBuf;
use std::time::Instant;

use consistency::backend::Backend;
use consistency::image;
use consistency::sample::Sampler;
use npyz::WriterBuilder;

use crate::files::{io_error, load_checkpoint, write_atomically};
use crate::BackendChoice;

#[derive(clap::Args)]
pub struct Args {
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
    pub backend: BackendChoice,
}

pub fn run<B: Backend>(be: &B, args: &Args) -> consistency::Result<()> {
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
            .shape(&image::digit_shape(args.count).map(|d| d as u64))
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
