//! The session behind the page's engine, natively on the CPU backend: what a loaded run says
//! about itself, sampling by rows, the cached classifier, a fresh run that trains and saves,
//! data-parallel steps, the views and the edits, and every refusal with its reason.

mod common;

use common::*;
use consistency::backend::cpu::CpuBackend;
use consistency::checkpoint::Checkpoint;
use consistency::data::mnist::Mnist;
use consistency::eval::classifier::to_model_range;
use consistency::eval::Evaluator;
use consistency::nn::Widths;
use consistency::recipe::TrainConfig;
use consistency::session::{SampleOptions, Session, Settings, TeacherSampling, TIME_POINTS};

const PIXELS: usize = 784;

fn shipped(file: &str) -> Checkpoint {
    Checkpoint::from_bytes(&std::fs::read(format!("assets/{file}")).unwrap()).unwrap()
}

fn session(file: &str) -> Session<CpuBackend> {
    Session::new(cpu(), shipped(file))
}

/// A tiny run's settings, as the page's Train panel gives them.
fn tiny(recipe: &str, batch: usize) -> Settings {
    Settings {
        widths: "tiny".into(),
        recipe: recipe.into(),
        loss: None,
        total_steps: 100,
        batch,
        lr: 0.002,
        seed: 1,
        conditional: false,
    }
}

/// `count` made-up training digits: random strokes of gray levels, labels 0-9 in turn.
fn digits(count: usize) -> Mnist {
    let images = random_vec(count * PIXELS, 7).iter().map(|v| if *v > 0.6 { 255 } else { 0 }).collect();
    Mnist { images, labels: (0..count).map(|i| (i % 10) as u8).collect(), count }
}

fn block_on<T>(future: impl std::future::Future<Output = T>) -> T {
    pollster::block_on(future)
}

#[track_caller]
fn assert_refused<T: std::fmt::Debug>(result: consistency::Result<T>, reason: &str) {
    let message = result.expect_err("refused").to_string();
    assert!(message.contains(reason), "'{message}' should say '{reason}'");
}

#[test]
fn a_loaded_run_says_what_it_is() {
    let s = session("consistency-small.safetensors").status();
    // The shipped pretrained model is consistency distillation from the chained run's teacher,
    // which it carries (the page compares the two).
    assert_eq!((s.objective, s.classes, s.has_teacher, s.guidance), ("distillation", 0, true, 1.0));
    assert_eq!(s.parameters, 175_761, "the small network");
    assert!(!s.has_data);
    // A snapshot of the chained run's distillation stage (chain/), which goes on past it.
    assert!(s.step >= 2_000 && s.step <= s.total_steps, "step {} of {}", s.step, s.total_steps);

    let s = session("teacher-tiny.safetensors").status();
    // The shipped diffusion teacher of "From the teacher": class-conditional, its own teacher.
    assert_eq!((s.objective, s.classes, s.has_teacher, s.widths), ("denoising", 10, true, [8, 16, 16]));
    let s = session("distilled-tiny.safetensors").status();
    assert_eq!((s.objective, s.classes, s.has_teacher, s.guidance), ("distillation", 10, true, 3.0));
    let view = session("distilled-tiny.safetensors").schedule();
    assert_eq!(view.steps.len(), 60);
    assert_eq!(view.step, s.step);
}

#[test]
fn sampled_rows_are_rows_of_the_batch_and_the_kept_classifier_reads_them() {
    let mut run = session("consistency-small.safetensors");
    let options = SampleOptions::default();
    let batch = block_on(run.sample(0..16, 3, &options)).unwrap();
    assert_eq!(batch.len(), 16 * PIXELS);
    let rows = block_on(run.sample(5..9, 3, &options)).unwrap();
    assert_eq!(rows, batch[5 * PIXELS..9 * PIXELS], "rows 5..9 of the same batch");

    let classes = block_on(run.classify(&batch)).unwrap().classes;
    assert_eq!(classes.len(), 16);
    let distinct: std::collections::BTreeSet<_> = classes.iter().collect();
    assert!(distinct.len() >= 5, "the classifier reads a variety of digits: {classes:?}");
    // The kept evaluator answers as a freshly loaded one does, call after call.
    let be = cpu();
    let fresh = block_on(Evaluator::shipped(&be).unwrap().classify_host(&be, &to_model_range(&batch))).unwrap();
    assert_eq!(classes, fresh.classes);
    assert_eq!(block_on(run.classify(&batch[..PIXELS])).unwrap().classes, classes[..1]);
}

#[test]
fn the_live_readout_reads_samples_and_the_run_file_keeps_the_readings() {
    let mut run = session("consistency-small.safetensors");
    let step = run.status().step;
    assert!(run.readouts().is_empty(), "the shipped run has no readings");
    let batch = block_on(run.sample(0..64, 11, &SampleOptions::default())).unwrap();
    let readout = block_on(run.read_legibility(&batch)).unwrap();
    assert_eq!((readout.step, readout.count), (step, 64));
    // The shipped model: about half its one-step samples are read with p >= 0.9.
    assert!((0.2..0.9).contains(&readout.legible), "legible share {}", readout.legible);
    let total: f64 = readout.shares.iter().sum();
    assert!((total - 100.0).abs() < 1e-9, "the shares add up to 100%: {total}");
    // Legibility is the share with p >= 0.9 of what classify reads.
    assert_eq!(block_on(run.classify(&batch)).unwrap().legible, readout.legible);

    // The readings travel in the run's file, to a fresh session and back.
    let bytes = block_on(run.snapshot()).unwrap();
    let mut back = Session::new(cpu(), Checkpoint::from_bytes(&bytes).unwrap());
    assert_eq!(back.readouts().len(), 1);
    let again = &back.readouts()[0];
    assert_eq!((again.step, again.count), (step, 64));
    assert_eq!(again, &readout);
    // A second reading at the same step replaces the first.
    block_on(back.read_legibility(&batch[..16 * PIXELS])).unwrap();
    assert_eq!(back.readouts().iter().map(|r| r.count).collect::<Vec<_>>(), [16]);
}

#[test]
fn every_time_point_choice_samples() {
    let mut run = session("consistency-small.safetensors");
    for &(steps, points) in TIME_POINTS {
        assert_eq!(points.len() + 1, steps);
        let options = SampleOptions { time_points: points.to_vec(), ..SampleOptions::default() };
        assert_eq!(block_on(run.sample(0..2, 0, &options)).unwrap().len(), 2 * PIXELS, "{steps} steps");
        let (captions, gray) = block_on(run.multistep(2, 0, &options)).unwrap();
        assert_eq!(captions.len(), 2 * steps, "noise and f, then re-noised and f per time point");
        assert_eq!(gray.len(), captions.len() * 2 * PIXELS);
    }
}

#[test]
fn a_distilled_run_samples_its_teacher_and_starts_new_runs_from_it() {
    let mut run = session("distilled-tiny.safetensors");
    let teacher = SampleOptions {
        digit: Some(7),
        teacher: Some(TeacherSampling { solver: "euler".into(), steps: 2 }),
        ..SampleOptions::default()
    };
    assert_eq!(block_on(run.sample(0..2, 0, &teacher)).unwrap().len(), 2 * PIXELS);
    let widths = run.status().widths;
    run.restart(&Settings { widths: "small".into(), ..tiny("tuning", 4) }).unwrap();
    let s = run.status();
    assert_eq!((s.step, s.widths, s.classes), (0, widths, 10), "the teacher's widths and classes, not the settings'");
    assert!(s.recipe.contains("consistency tuning"), "{}", s.recipe);
}

/// The paper's whole path in the page: a diffusion teacher trained from scratch, sampled by
/// its ODE, then a consistency model tuned from it (the teacher run is its own teacher).
#[test]
fn a_teacher_trains_in_the_page_and_a_consistency_model_starts_from_it() {
    let mut run = session("consistency-small.safetensors");
    run.set_training_data(digits(32));
    run.restart(&tiny("teacher", 4)).unwrap();
    let s = run.status();
    assert_eq!((s.objective, s.has_teacher, s.widths), ("denoising", true, [8, 16, 16]));
    let loss = block_on(run.train(2)).unwrap();
    assert!(loss.is_finite() && loss > 0.0, "loss {loss}");
    let heun = SampleOptions {
        teacher: Some(TeacherSampling { solver: "heun".into(), steps: 2 }),
        ..SampleOptions::default()
    };
    assert_eq!(block_on(run.sample(0..2, 0, &heun)).unwrap().len(), 2 * PIXELS);
    let saved = Checkpoint::from_bytes(&block_on(run.snapshot()).unwrap()).unwrap();
    assert_eq!(saved.step, 2);

    run.restart(&tiny("tuning", 4)).unwrap();
    let s = run.status();
    assert_eq!((s.objective, s.step, s.widths), ("tuning", 0, [8, 16, 16]));
    assert!(block_on(run.train(1)).unwrap().is_finite());
}

#[test]
fn a_fresh_run_trains_and_its_snapshot_loads_back() {
    let mut run = session("consistency-small.safetensors");
    run.restart(&tiny("improved", 4)).unwrap();
    assert_refused(block_on(run.train(1)), "MNIST is not loaded yet");
    assert_eq!(run.set_training_data(digits(32)), 32);
    let loss = block_on(run.train(2)).unwrap();
    assert!(loss.is_finite() && loss > 0.0, "loss {loss}");
    assert_eq!(run.status().step, 2);

    let bytes = block_on(run.snapshot()).unwrap();
    let saved = Checkpoint::from_bytes(&bytes).unwrap();
    assert_eq!(saved.step, 2);
    let mut again = Session::new(cpu(), shipped("consistency-small.safetensors"));
    again.load(saved);
    assert_eq!(again.status().step, 2);
    let options = SampleOptions::default();
    assert_eq!(block_on(again.sample(0..4, 9, &options)).unwrap(), block_on(run.sample(0..4, 9, &options)).unwrap());
}

#[test]
fn data_parallel_slices_take_the_whole_batch_step() {
    let fresh = || {
        let mut run = session("consistency-small.safetensors");
        run.restart(&tiny("original", 6)).unwrap();
        run.set_training_data(digits(24));
        run
    };
    let mut whole = fresh();
    let whole_loss = block_on(whole.train(1)).unwrap();

    let mut sliced = fresh();
    let (loss_a, mut gradient) = block_on(sliced.gradients(0..2)).unwrap();
    let (loss_b, rest) = block_on(sliced.gradients(2..6)).unwrap();
    gradient.iter_mut().zip(&rest).for_each(|(g, r)| *g += r);
    sliced.apply_gradients(&gradient, loss_a + loss_b).unwrap();
    assert_close("loss", &[loss_a + loss_b], &[whole_loss], 1e-5, 1e-7);
    assert_eq!(sliced.status().step, 1);
    let online = |run: &mut Session<CpuBackend>| Checkpoint::from_bytes(&block_on(run.snapshot()).unwrap()).unwrap();
    let (a, b) = (online(&mut sliced), online(&mut whole));
    // Adam's first step is about lr times the gradient's sign, which a near-zero gradient
    // summed in another order may flip: the bound the page's worker test uses.
    assert_close("online weights", &a.states[0], &b.states[0], 0.0, 2.0 * 0.002 * 2.0);

    assert_refused(block_on(sliced.gradients(0..7)), "not a slice of the batch of 6");
    assert_refused(sliced.apply_gradients(&gradient[1..], 1.0), "a gradient of");
    assert_refused(sliced.apply_gradients(&gradient, f32::NAN), "back at step 1, the last good state");
    assert_eq!(sliced.status().step, 1, "back at the last snapshot");
}

#[test]
fn views_and_edits_give_what_they_were_given_and_the_result() {
    let mut run = session("consistency-small.safetensors");
    assert_refused(block_on(run.trajectory(0, 0, 12)), "MNIST is not loaded yet");
    run.set_training_data(digits(3));
    let (times, gray) = block_on(run.trajectory(4, 0, 99)).unwrap();
    assert_eq!(times.len(), 32, "at most 32 times");
    assert_eq!(gray.len(), 2 * 32 * PIXELS);

    let given = block_on(run.sample(0..2, 5, &SampleOptions::default())).unwrap();
    let keep: Vec<u8> = (0..2 * PIXELS).map(|i| u8::from(i % PIXELS < PIXELS / 2)).collect();
    let out = block_on(run.inpaint(&given, &keep, 1)).unwrap();
    assert_eq!(out[..2 * PIXELS], given, "the given digits first");
    let result = &out[2 * PIXELS..];
    assert!(keep.iter().zip(result.iter().zip(&given)).all(|(&k, (r, g))| k == 0 || r == g), "kept pixels kept");

    assert_eq!(block_on(run.super_resolve(&given, 4, 1)).unwrap().len(), 4 * PIXELS);
    assert_eq!(block_on(run.denoise(&given, 2.0, 1)).unwrap().len(), 4 * PIXELS);
    let sdedit = block_on(run.sdedit(&given, 5.0, 1)).unwrap();
    assert_eq!(sdedit[..2 * PIXELS], given, "the strokes first");
    assert_eq!(block_on(run.interpolate(1, 2, 3)).unwrap().len(), 3 * PIXELS);

    assert_refused(block_on(run.super_resolve(&given, 3, 1)), "not 3");
    assert_refused(block_on(run.inpaint(&given[1..], &keep, 1)), "not whole 28x28 digits");
    assert_refused(block_on(run.classify(&[])), "not whole 28x28 digits");
}

#[test]
fn refusals_say_why_and_change_nothing() {
    // A consistency run without a teacher (the shipped model carries its own).
    let plain = Checkpoint::start(Widths::SMALL, 0, TrainConfig::improved(1));
    let mut run = Session::new(cpu(), plain);
    assert_refused(run.restart(&tiny("fast", 4)), "unknown recipe 'fast'");
    assert_refused(run.restart(&Settings { loss: Some("l3".into()), ..tiny("improved", 4) }), "unknown loss 'l3'");
    assert_refused(run.restart(&tiny("distill", 4)), "starts from a diffusion teacher");
    assert_refused(run.restart(&Settings { widths: "wide".into(), ..tiny("improved", 4) }), "wide");
    assert_eq!(run.status().parameters, 175_761, "the loaded run stays");

    let teacher = SampleOptions {
        teacher: Some(TeacherSampling { solver: "heun".into(), steps: 2 }),
        ..SampleOptions::default()
    };
    assert_refused(block_on(run.sample(0..2, 0, &teacher)), "no diffusion teacher");
    assert_refused(block_on(run.sample(3..3, 0, &SampleOptions::default())), "no digits to sample");
    let late = SampleOptions { time_points: vec![90.0], ..SampleOptions::default() };
    assert!(block_on(run.sample(0..1, 0, &late)).is_err(), "a time point past T");

    // A diffusion teacher's own run samples by its ODE but has no multistep frames.
    let mut teacher_run =
        Session::new(cpu(), Checkpoint::start(Widths(run.status().widths), 0, TrainConfig::teacher(1)));
    assert_refused(block_on(teacher_run.multistep(2, 0, &SampleOptions::default())), "for a consistency model");
}
