//! `cm calibrate-classifier`: refits the FID classifier's last layer by outlier exposure
//! (`consistency::eval::calibrate`), reports what held-out digits and outliers are read as by
//! each fit, writes the weights.

use std::path::PathBuf;
use std::time::Instant;

use consistency::backend::cpu::CpuBackend;
use consistency::data::mnist::{Mnist, Split};
use consistency::eval::{calibrate, Evaluator};
use consistency::nn::classifier::weights;

use crate::files::{io_error, write_atomically};

#[derive(clap::Args)]
pub struct Args {
    /// The weights to start from (default: the shipped ones).
    #[arg(long)]
    weights: Option<PathBuf>,
    /// Where to write the calibrated weights.
    #[arg(long)]
    out: PathBuf,
    /// Directory with the MNIST IDX files.
    #[arg(long, default_value = "data/mnist")]
    data: PathBuf,
}

pub fn run(args: &Args) -> consistency::Result<()> {
    let be = CpuBackend::new();
    let (train, test) = (Mnist::load_split(&args.data, Split::Train)?, Mnist::load_split(&args.data, Split::Test)?);
    let evaluator = match &args.weights {
        Some(path) => {
            let bytes = std::fs::read(path).map_err(|e| io_error(path, e))?;
            Evaluator::from_safetensors(&be, &bytes, &path.display().to_string())?
        }
        None => Evaluator::shipped(&be)?,
    };
    let config = calibrate::CalibrationConfig::default();
    println!("{config:?}");
    let start = Instant::now();
    let (flat, readings) = pollster::block_on(calibrate::calibrate(&be, &evaluator, &train, &test, &config))?;
    println!(
        "held-out images, read by the trained head and each refitted one ({:.0} s):",
        start.elapsed().as_secs_f64()
    );
    for reading in &readings {
        println!("  {reading}");
    }
    let chosen = readings.last().expect("the trained head's reading at least");
    let info = weights::WeightsInfo { test_accuracy: chosen.test_accuracy, ..evaluator.info.clone() };
    let bytes = weights::save(&evaluator.net, &flat, &info)?;
    write_atomically(&args.out, &bytes)?;
    println!("took outlier weight {}; wrote {} ({} bytes)", chosen.outlier_weight, args.out.display(), bytes.len());
    Ok(())
}
