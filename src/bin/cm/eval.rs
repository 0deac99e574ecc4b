//! `cm eval`: the MNIST-FID, legibility and digit shares of a checkpoint's samplers, next to
//! the scale of real, blurred and noise digits.

use std::path::{Path, PathBuf};
use std::time::Instant;

use consistency::backend::Backend;
use consistency::data::mnist::{Mnist, Split, CLASSES};
use consistency::eval::{Evaluator, Quality};
use consistency::model::{Model, Preconditioning};
use consistency::sample::Sampler;
use consistency::session::TIME_POINTS;
use consistency::Error;

use crate::files::{append, io_error, load_checkpoint};
use crate::BackendChoice;

#[derive(clap::Args)]
pub struct Args {
    /// A checkpoint written by `cm train` (not needed with --scale-only).
    #[arg(long, required_unless_present = "scale_only")]
    checkpoint: Option<PathBuf>,
    /// Samples per measurement (the MNIST-FID convention is 10,000).
    #[arg(long, default_value_t = 10_000)]
    count: usize,
    /// For a consistency model, the multistep samplers to measure (Algorithm 1): groups of
    /// refinement times after the first step from 80, separated by ';' (an empty group is
    /// one-step sampling), e.g. ";0.8;5,1.5,0.5". The default measures the page's 1 step and 2
    /// steps (80, 0.8).
    #[arg(long, allow_hyphen_values = true)]
    time_points: Option<String>,
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
    /// Append one CSV row per sampler (label, sampler, evaluations, FID, legible, class entropy,
    /// the ten digit shares, count, seconds) to this file, labelled with --markdown's label
    /// (scripts/continue-run, scripts/compare-distillation, scripts/paper-figures).
    #[arg(long)]
    csv: Option<PathBuf>,
    #[arg(long, default_value = "data/mnist")]
    data: PathBuf,
    #[arg(long, value_enum, default_value = "gpu")]
    pub backend: BackendChoice,
}

pub fn run<B: Backend>(be: &B, args: &Args) -> consistency::Result<()> {
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
    for sampler in samplers(&model, args)? {
        let started = Instant::now();
        let images = pollster::block_on(sampler.draw(be, &model, &params, args.count, args.seed, None))?;
        let seconds = started.elapsed().as_secs_f64();
        let quality =
            pollster::block_on(evaluator.classify_host(be, &images)).and_then(|c| Quality::new(&c, &reference))?;
        println!("  {} ({} samples drawn in {seconds:.1} s): {quality}", sampler.describe(), args.count);
        if let Some(path) = &args.csv {
            append_row(path, args, &sampler, &quality, seconds)?;
        }
        if model.is_conditional() {
            // Section 8's class-conditional sampling: ask for each digit in turn and count how
            // often the classifier sees the digit that was asked for.
            let per_digit = args.count.div_ceil(CLASSES).min(1000);
            let mut agreed = [0usize; CLASSES];
            for digit in 0..CLASSES as u8 {
                let images = pollster::block_on(sampler.draw(be, &model, &params, per_digit, args.seed, Some(digit)))?;
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

/// One `--time-points` group: refinement times separated by ','.
fn time_group(group: &str) -> consistency::Result<Vec<f64>> {
    group
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| p.parse().map_err(|_| Error::Invalid(format!("--time-points: '{p}' is not a time"))))
        .collect()
}

/// The samplers to measure: the `--time-points` groups for a consistency model, the `--ode`
/// list for a teacher.
fn samplers(model: &Model, args: &Args) -> consistency::Result<Vec<Sampler>> {
    if model.preconditioning == Preconditioning::Consistency {
        let groups: Vec<Vec<f64>> = match &args.time_points {
            Some(text) => text.split(';').map(time_group).collect::<consistency::Result<_>>()?,
            // The page's choices of one and two steps, so both measure the same samplers.
            None => TIME_POINTS.iter().filter(|(steps, _)| *steps <= 2).map(|(_, points)| points.to_vec()).collect(),
        };
        return groups.iter().map(|points| Sampler::for_model(model, points, "", 0)).collect();
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

/// The columns of `cm eval --csv`: one row per sampler.
const CSV_HEADER: &str = "label,sampler,evaluations,fid,legible,class_entropy,shares,count,seconds";

/// Appends `quality`'s row to `cm eval --csv`'s file (labelled with --markdown's label; commas
/// in text become ';', the digit shares in percent are joined by ';'): a missing or empty file
/// gets the header first, a file whose header is another's is refused.
fn append_row(path: &Path, args: &Args, sampler: &Sampler, quality: &Quality, seconds: f64) -> consistency::Result<()> {
    let text =
        if path.exists() { std::fs::read_to_string(path).map_err(|e| io_error(path, e))? } else { String::new() };
    if !text.is_empty() {
        if text.lines().next() != Some(CSV_HEADER) {
            return Err(Error::Invalid(format!(
                "{}: not a `cm eval --csv` file of this version (its header is not '{CSV_HEADER}'): choose \
                 another --csv",
                path.display()
            )));
        }
    } else {
        append(path, &format!("{CSV_HEADER}\n"))?;
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
