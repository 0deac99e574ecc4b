//! Checkpoints: a round trip keeps everything, resuming continues the run exactly, and bad files
//! are refused with a message that names the problem.

mod common;

use std::collections::HashMap;

use common::*;
use consistency::backend::Backend;
use consistency::checkpoint::{Checkpoint, FORMAT};
use consistency::model::Model;
use consistency::nn::Widths;
use consistency::recipe::{Distance, TrainConfig};
use consistency::train::Trainer;
use safetensors::tensor::{Dtype, SafeTensors, TensorView};

fn images() -> Vec<u8> {
    random_vec(12 * 784, 5).iter().map(|v| ((v + 1.0) * 127.5) as u8).collect()
}

fn config() -> TrainConfig {
    TrainConfig { batch: 3, lr: 1e-3, seed: 9, ..TrainConfig::improved(8) }
}

fn new_trainer<B: Backend>(be: &B, config: &TrainConfig) -> Trainer<B> {
    let model = Model::new(Widths::TINY);
    let init = model.net.layout.init(config.seed);
    Trainer::new(be, model, config.clone(), &init, &images(), &[])
}

fn checkpoint<B: Backend>(be: &B, trainer: &Trainer<B>) -> Checkpoint {
    pollster::block_on(trainer.checkpoint(be)).expect("checkpoint")
}

/// Losses of `steps` further steps.
fn losses<B: Backend>(be: &B, trainer: &mut Trainer<B>, steps: usize) -> Vec<f32> {
    (0..steps).map(|_| read(be, &trainer.step(be))[0]).collect()
}

#[test]
fn a_checkpoint_round_trips_through_bytes() {
    let be = cpu();
    let mut trainer = new_trainer(&be, &config());
    losses(&be, &mut trainer, 2);
    let saved = checkpoint(&be, &trainer);
    assert_eq!(saved.step, 2);
    let loaded = Checkpoint::from_bytes(&saved.to_bytes().unwrap()).unwrap();
    assert_eq!(loaded, saved);
    // The original recipe's EMA teacher (mu0) and its metric survive too.
    let original = Checkpoint { config: TrainConfig { seed: 3, ..TrainConfig::original(100) }, ..saved.clone() };
    assert_eq!(Checkpoint::from_bytes(&original.to_bytes().unwrap()).unwrap(), original);
    // The perceptual distance, consistency tuning, and progressive distillation (which
    // carries its teacher) survive as well.
    let perceptual = TrainConfig { distance: Distance::Perceptual, ..TrainConfig::improved(100) };
    let tuning = TrainConfig { distance: Distance::Perceptual, ..TrainConfig::tuning(100) };
    for config in [perceptual, tuning] {
        let run = Checkpoint { config, ..saved.clone() };
        assert_eq!(Checkpoint::from_bytes(&run.to_bytes().unwrap()).unwrap(), run);
    }
    let teacher = Checkpoint { config: TrainConfig::teacher(10), ..saved.clone() };
    let progressive = Checkpoint::from_teacher(&teacher, TrainConfig::progressive(100)).unwrap();
    assert!(progressive.teacher.is_some());
    assert_eq!(Checkpoint::from_bytes(&progressive.to_bytes().unwrap()).unwrap(), progressive);
    let tuned = Checkpoint::from_teacher(&teacher, TrainConfig::tuning(100)).unwrap();
    assert!(tuned.teacher.is_none(), "tuning keeps no teacher: it is its own");
    assert!(Checkpoint::from_teacher(&teacher, TrainConfig::improved(100)).is_err(), "CT starts from no teacher");
}

#[test]
fn bad_progressive_and_tuning_metadata_is_refused() {
    let be = cpu();
    let trainer = new_trainer(&be, &config());
    let saved = checkpoint(&be, &trainer);
    let teacher = Checkpoint { config: TrainConfig::teacher(10), ..saved.clone() };
    for (config, key, bad, expected) in [
        (TrainConfig::progressive(100), "pd_teacher_steps", "12", "power-of-two"),
        (TrainConfig::progressive(100), "pd_stage_steps", "0", "stage_steps >= 1"),
        (TrainConfig::tuning(100), "ect_q", "1", "q > 1"),
        (TrainConfig::tuning(100), "ect_stage_steps", "x", "'ect_stage_steps'"),
    ] {
        let run = Checkpoint::from_teacher(&teacher, config).unwrap();
        let (_, header) = SafeTensors::read_metadata(&run.to_bytes().unwrap()).unwrap();
        let mut meta = header.metadata().clone().unwrap();
        meta.insert(key.into(), bad.into());
        let tensors = SafeTensors::deserialize(&run.to_bytes().unwrap())
            .unwrap()
            .tensors()
            .into_iter()
            .map(|(n, v)| (n, Dtype::F32, v.shape().to_vec(), v.data().to_vec()))
            .collect::<Vec<Entry>>();
        refused(&build(&tensors, meta), expected);
    }
}

/// Six steps in one go, or three, a save to bytes, a load, and three more: the same losses and
/// the same final state, bit for bit.
fn resume_is_exact<B: Backend>(be: &B) {
    let config = config();
    let mut straight = new_trainer(be, &config);
    let expected = losses(be, &mut straight, 6);

    let mut first = new_trainer(be, &config);
    let mut got = losses(be, &mut first, 3);
    let bytes = checkpoint(be, &first).to_bytes().unwrap();
    drop(first);
    let mut resumed = Trainer::resume(be, &Checkpoint::from_bytes(&bytes).unwrap(), &images(), &[]);
    got.extend(losses(be, &mut resumed, 3));

    assert_eq!(got, expected, "losses of a resumed run");
    assert_eq!(checkpoint(be, &resumed), checkpoint(be, &straight), "state after the resumed run");
}

#[test]
fn resuming_continues_the_run_exactly_on_cpu() {
    resume_is_exact(&cpu());
}

#[test]
fn resuming_continues_the_run_exactly_on_gpu() {
    resume_is_exact(&gpu());
}

/// A tensor of a safetensors file: name, dtype, shape, bytes.
type Entry = (String, Dtype, Vec<usize>, Vec<u8>);

/// A valid checkpoint's tensors and metadata, to tamper with.
fn parts() -> (Vec<Entry>, HashMap<String, String>) {
    let be = cpu();
    let bytes = checkpoint(&be, &new_trainer(&be, &config())).to_bytes().unwrap();
    let (_, header) = SafeTensors::read_metadata(&bytes).unwrap();
    let meta = header.metadata().clone().unwrap();
    let tensors = SafeTensors::deserialize(&bytes).unwrap();
    let mut list: Vec<_> = tensors
        .tensors()
        .into_iter()
        .map(|(name, t)| (name, t.dtype(), t.shape().to_vec(), t.data().to_vec()))
        .collect();
    list.sort_by(|a, b| a.0.cmp(&b.0));
    (list, meta)
}

fn build(tensors: &[Entry], meta: HashMap<String, String>) -> Vec<u8> {
    let views = tensors.iter().map(|(n, d, s, b)| (n.clone(), TensorView::new(*d, s.clone(), b).unwrap()));
    safetensors::serialize(views, Some(meta)).unwrap()
}

#[track_caller]
fn refused(bytes: &[u8], expected: &str) {
    let message = Checkpoint::from_bytes(bytes).expect_err("a bad checkpoint must be refused").to_string();
    assert!(message.contains(expected), "message '{message}' should mention '{expected}'");
}

#[test]
fn bad_checkpoints_are_refused_with_the_reason() {
    let (tensors, meta) = parts();
    let good = build(&tensors, meta.clone());
    assert!(Checkpoint::from_bytes(&good).is_ok());

    refused(&good[..good.len() / 2], "not a safetensors file");
    refused(b"", "not a safetensors file");
    refused(&[0xff; 64], "not a safetensors file");

    let with = |key: &str, value: &str| {
        let mut m = meta.clone();
        m.insert(key.into(), value.into());
        build(&tensors, m)
    };
    refused(&with("format", "something-else/9"), "format is 'something-else/9'");
    refused(&with("widths", "16,32,32"), "has shape");
    refused(&with("widths", "7,7,7"), "width config");
    refused(&with("step", "-1"), "'step'");
    refused(&with("schedule", "cosine"), "unknown schedule 'cosine'");
    refused(&with("metric", "l3"), "unknown metric 'l3'");
    refused(&with("s1", "1"), "s0 <= s1");
    let mut m = meta.clone();
    m.remove("lr");
    refused(&build(&tensors, m), "no 'lr' entry");

    // A missing tensor, an extra one, a wrong dtype, a wrong shape, a NaN.
    refused(&build(&tensors[1..], meta.clone()), &format!("missing tensor '{}'", tensors[0].0));
    let mut extra = tensors.clone();
    extra.push(("ema.mystery".into(), Dtype::F32, vec![1], vec![0; 4]));
    refused(&build(&extra, meta.clone()), "unexpected tensor 'ema.mystery'");
    let mut half = tensors.clone();
    let (_, dtype, _, data) = &mut half[0];
    *dtype = Dtype::F16;
    data.truncate(data.len() / 2);
    refused(&build(&half, meta.clone()), "expected F32");
    let mut reshaped = tensors.clone();
    let (name, _, shape, _) = reshaped.iter_mut().find(|t| t.2.len() == 4).expect("a conv weight");
    *shape = vec![shape.iter().product()];
    let expected = format!("tensor '{name}' has shape");
    refused(&build(&reshaped, meta.clone()), &expected);
    let mut nan = tensors.clone();
    nan[0].3[..4].copy_from_slice(&f32::NAN.to_le_bytes());
    refused(&build(&nan, meta), "non-finite");
    assert_eq!(FORMAT, meta_format(&good));
}

fn meta_format(bytes: &[u8]) -> String {
    let (_, header) = SafeTensors::read_metadata(bytes).unwrap();
    header.metadata().as_ref().unwrap()["format"].clone()
}

/// Random damage to a valid file (flipped bytes, truncation, a rewritten header length): the
/// loader refuses or accepts, and never panics. (`fuzz/` runs the same target under libFuzzer.)
#[test]
fn randomly_damaged_checkpoints_never_panic() {
    let be = cpu();
    let good = checkpoint(&be, &new_trainer(&be, &config())).to_bytes().unwrap();
    let noise = random_vec(30_000, 77);
    let mut pick = noise.iter().map(|v| ((v + 1.0) * 0.5 * u32::MAX as f32) as usize);
    let mut accepted = 0;
    for round in 0..3000 {
        let mut bytes = good.clone();
        match round % 3 {
            // Bytes in the JSON header (its length is the first 8 bytes).
            0 => {
                let header = 8 + u64::from_le_bytes(good[..8].try_into().unwrap()) as usize;
                for _ in 0..1 + round % 4 {
                    let at = pick.next().unwrap() % header;
                    bytes[at] = pick.next().unwrap() as u8;
                }
            }
            1 => bytes.truncate(pick.next().unwrap() % good.len()),
            _ => {
                let len = (pick.next().unwrap() % (2 * good.len())) as u64;
                bytes[..8].copy_from_slice(&len.to_le_bytes());
            }
        }
        if let Ok(loaded) = Checkpoint::from_bytes(&bytes) {
            accepted += 1;
            assert_eq!(Checkpoint::from_bytes(&loaded.to_bytes().unwrap()).unwrap(), loaded);
        }
    }
    assert!(accepted < 3000, "some damage must be refused");
}

/// A teacher's checkpoint says so, and comes back as a teacher (a denoiser network); the shipped
/// model, written before teachers existed, reads as a consistency run.
#[test]
fn the_objective_round_trips_and_old_files_are_consistency_runs() {
    use consistency::model::Preconditioning;
    use consistency::recipe::Objective;
    let teacher = Checkpoint::start(Widths::TINY, 0, TrainConfig { seed: 2, ..TrainConfig::teacher(50) });
    let back = Checkpoint::from_bytes(&teacher.to_bytes().unwrap()).unwrap();
    assert_eq!(back, teacher);
    assert_eq!(back.config.objective, Objective::Denoising);
    assert_eq!(back.model().preconditioning, Preconditioning::Denoiser);
    let shipped = Checkpoint::from_bytes(&std::fs::read("assets/consistency-small.safetensors").unwrap()).unwrap();
    // The shipped model is a consistency model (distilled from the chained run's teacher).
    assert!(matches!(
        shipped.config.objective,
        Objective::Consistency | Objective::Tuning { .. } | Objective::Distillation { .. }
    ));
    assert_eq!(shipped.model().preconditioning, Preconditioning::Consistency);
}

/// A distillation run's file carries its teacher and comes back with it; a file that lost the
/// teacher is refused, and only a diffusion teacher can be distilled.
#[test]
fn a_distillation_checkpoint_carries_its_teacher() {
    use consistency::ode::Solver;
    let teacher = Checkpoint::start(Widths::TINY, 0, TrainConfig { seed: 2, ..TrainConfig::teacher(50) });
    let config = TrainConfig { seed: 4, ..TrainConfig::distillation(50, Solver::Euler) };
    let run = Checkpoint::from_teacher(&teacher, config.clone()).unwrap();
    let bytes = run.to_bytes().unwrap();
    let back = Checkpoint::from_bytes(&bytes).unwrap();
    assert_eq!(back, run);
    assert_eq!(back.teacher.as_deref(), Some(teacher.ema()));

    let without = Checkpoint { teacher: None, ..run.clone() }.to_bytes().unwrap();
    let error = Checkpoint::from_bytes(&without).unwrap_err().to_string();
    assert!(error.contains("missing tensor 'teacher."), "{error}");
    let not_a_teacher = Checkpoint::start(Widths::TINY, 0, config.clone());
    let error = Checkpoint::from_teacher(&not_a_teacher, config).unwrap_err().to_string();
    assert!(error.contains("needs a diffusion teacher"), "{error}");
}

/// A class-conditional run's file says how many classes and keeps its label embedding and
/// label dropout; one whose label embedding is gone, or with classes it has no weights for,
/// is refused; files written before conditional models read as unconditional.
#[test]
fn a_conditional_checkpoint_round_trips() {
    let config = TrainConfig { seed: 6, label_dropout: 0.25, ..TrainConfig::teacher(50) };
    let run = Checkpoint::start(Widths::TINY, 10, config);
    let back = Checkpoint::from_bytes(&run.to_bytes().unwrap()).unwrap();
    assert_eq!(back, run);
    assert!(back.model().is_conditional());
    assert_eq!(back.config.label_dropout, 0.25);

    // A distillation from it with guidance keeps the weight; an unconditional teacher has none.
    let mut distill = TrainConfig::distillation(50, consistency::ode::Solver::Heun);
    if let consistency::recipe::Objective::Distillation { guidance, .. } = &mut distill.objective {
        *guidance = 3.0;
    }
    let student = Checkpoint::from_teacher(&run, distill.clone()).unwrap();
    assert_eq!(Checkpoint::from_bytes(&student.to_bytes().unwrap()).unwrap(), student);
    let plain_teacher = Checkpoint::start(Widths::TINY, 0, run.config.clone());
    let error = Checkpoint::from_teacher(&plain_teacher, distill).unwrap_err().to_string();
    assert!(error.contains("class-conditional"), "{error}");

    let unconditional = Checkpoint::start(Widths::TINY, 0, run.config.clone());
    let as_conditional = Checkpoint { classes: 10, ..unconditional.clone() };
    let error = as_conditional.to_bytes().unwrap_err().to_string();
    assert!(error.contains("values, expected"), "{error}");
    let shipped = Checkpoint::from_bytes(&std::fs::read("assets/consistency-small.safetensors").unwrap()).unwrap();
    assert_eq!(shipped.classes, 0);

    // The metadata claims classes the tensors lack.
    let bytes = unconditional.to_bytes().unwrap();
    let tensors = SafeTensors::deserialize(&bytes).unwrap();
    let (_, header) = SafeTensors::read_metadata(&bytes).unwrap();
    let mut meta = header.metadata().clone().unwrap();
    meta.insert("classes".into(), "10".into());
    let views: Vec<(String, TensorView)> = tensors
        .names()
        .into_iter()
        .map(|n| {
            let t = tensors.tensor(n).unwrap();
            (n.to_string(), TensorView::new(Dtype::F32, t.shape().to_vec(), t.data()).unwrap())
        })
        .collect();
    let relabelled = safetensors::serialize(views, Some(meta)).unwrap();
    let error = Checkpoint::from_bytes(&relabelled).unwrap_err().to_string();
    assert!(error.contains("missing tensor 'online.label.weight'"), "{error}");
}

/// The live readout's readings travel in the file's metadata; a damaged entry is refused with
/// what is wrong, never half read.
#[test]
fn legibility_readings_round_trip_and_damaged_ones_are_refused() {
    use consistency::eval::readout::Readout;
    let mut run = Checkpoint::start(Widths::TINY, 0, TrainConfig::improved(50));
    let shares = [10.0, 11.25, 9.5, 10.0, 8.75, 10.5, 9.0, 10.0, 11.0, 10.0];
    run.readouts = vec![
        Readout { step: 0, count: 256, legible: 0.0625, shares },
        Readout { step: 300, count: 256, legible: 0.5, shares },
    ];
    let back = Checkpoint::from_bytes(&run.to_bytes().unwrap()).unwrap();
    assert_eq!(back, run);
    assert_eq!(Readout::parse("").unwrap(), []);
    for bad in [
        "300 256 0.5",
        "300 256 1.5 10 10 10 10 10 10 10 10 10 10",
        "x 256 0.5 10 10 10 10 10 10 10 10 10 10",
        "300 256 NaN 10 10 10 10 10 10 10 10 10 10",
        "300 256 0.5 -1 10 10 10 10 10 10 10 10 10",
    ] {
        let error = Readout::parse(bad).unwrap_err().to_string();
        assert!(error.contains("legibility reading"), "{bad}: {error}");
    }
}

/// The teacher a run holds: a teacher run is its own, a distillation carries one (its weights
/// become the teacher run's sampling EMA), a consistency run has none.
#[test]
fn a_run_gives_the_diffusion_teacher_it_holds() {
    use consistency::ode::Solver;
    let teacher = Checkpoint::start(Widths::TINY, 0, TrainConfig { seed: 2, ..TrainConfig::teacher(50) });
    assert_eq!(teacher.diffusion_teacher().as_ref(), Some(&teacher));
    let distilled = Checkpoint::from_teacher(&teacher, TrainConfig::distillation(10, Solver::Heun)).unwrap();
    let carried = distilled.diffusion_teacher().unwrap();
    assert_eq!(carried.ema(), teacher.ema());
    assert!(Checkpoint::from_teacher(&carried, TrainConfig::tuning(10)).is_ok());
    assert_eq!(Checkpoint::start(Widths::TINY, 0, TrainConfig::improved(10)).diffusion_teacher(), None);
}
