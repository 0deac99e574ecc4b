//! `cm info`: the GPU adapter and the network sizes, or what a checkpoint holds.

use std::path::PathBuf;

use consistency::backend::gpu::GpuBackend;
use consistency::nn::{UNet, Widths};

use crate::files::load_checkpoint;

#[derive(clap::Args)]
pub struct Args {
    /// Instead: a checkpoint's step, widths and recipe (no GPU needed).
    #[arg(long)]
    checkpoint: Option<PathBuf>,
}

pub fn run(args: &Args) -> consistency::Result<()> {
    if let Some(path) = &args.checkpoint {
        let saved = load_checkpoint(path)?;
        println!("{}: step {}, {:?} {}", path.display(), saved.step, saved.widths, saved.config.describe());
        return Ok(());
    }
    let gpu = GpuBackend::new_blocking()?;
    let a = &gpu.context().adapter;
    println!("adapter: {a}{}", if a.is_fallback { " [software fallback]" } else { "" });
    for (name, w) in [("tiny", Widths::TINY), ("small", Widths::SMALL), ("base", Widths::BASE)] {
        println!("{name:>5} {:?}: {} parameters", w.0, UNet::new(w).layout.count());
    }
    Ok(())
}
