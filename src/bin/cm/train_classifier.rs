//! `cm train-classifier`: trains an MNIST classifier, reports, measures it on the test set,
//! writes the weights.

use std::path::PathBuf;
use std::time::Instant;

use clap::ValueEnum;
use consistency::backend::Backend;
use consistency::data::mnist::{Mnist, Split};
use consistency::nn::classifier::{weights, Architecture, Classifier};
use consistency::train::classifier::{self, TrainConfig};

use crate::files::write_atomically;
use crate::BackendChoice;

#[derive(Clone, Copy, PartialEq, ValueEnum)]
enum NetworkChoice {
    /// The MNIST-FID classifier.
    Fid,
    /// The perceptual distance's feature network.
    Perceptual,
}

#[derive(clap::Args)]
pub struct Args {
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
    pub backend: BackendChoice,
}

pub fn run<B: Backend>(be: &B, args: &Args) -> consistency::Result<()> {
    let config = TrainConfig { steps: args.steps, batch: args.batch, lr: args.lr, seed: args.seed };
    let architecture = match args.network {
        NetworkChoice::Fid => Architecture::FID,
        NetworkChoice::Perceptual => Architecture::PERCEPTUAL,
    };
    let data = &args.data;
    let (train, test) = (Mnist::load_split(data, Split::Train)?, Mnist::load_split(data, Split::Test)?);
    let net = Classifier::new(architecture);
    println!("backend: {}", be.name());
    println!("classifier {} ({} parameters), {config:?}", architecture.name, net.layout.count());
    let start = Instant::now();
    let report =
        |step: u32, loss: f32| println!("step {step:>6}  loss {loss:.4}  {:.0} s", start.elapsed().as_secs_f64());
    let (params, info) = pollster::block_on(classifier::train(be, architecture, config, &train, &test, 100, report))?;
    println!("trained in {:.0} s; test accuracy {:.2}%", start.elapsed().as_secs_f64(), 100.0 * info.test_accuracy);
    let bytes = weights::save(&net, &params, &info)?;
    write_atomically(&args.out, &bytes)?;
    println!("wrote {} ({} bytes)", args.out.display(), bytes.len());
    Ok(())
}
