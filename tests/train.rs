//! Consistency training steps (Algorithm 3 with the iCT switches): steps on the GPU equal the
//! CPU backend.

mod common;

use common::*;
use consistency::backend::prelude::*;
use consistency::backend::Metric;
use consistency::checkpoint::Checkpoint;
use consistency::model::Model;
use consistency::nn::Widths;
use consistency::ode::Solver;
use consistency::recipe::{Distance, Objective, TrainConfig};
use consistency::schedule::{CtKind, CtSchedule, IndexChoice, Weighting};
use consistency::train::Trainer;

fn config(kind: CtKind, metric: Metric, batch: usize) -> TrainConfig {
    TrainConfig {
        objective: Objective::Consistency,
        schedule: CtSchedule { kind, total_steps: 100 },
        index_choice: IndexChoice::Lognormal,
        weighting: Weighting::InverseStep,
        distance: Distance::Pixel(metric),
        batch,
        lr: 1e-3,
        sampling_ema: 0.99,
        max_grad_norm: 1.0,
        label_dropout: 0.1,
        seed: 11,
    }
}

/// Losses of `steps` steps and the final online, target and EMA weights.
fn train<B: Backend>(be: &B, config: &TrainConfig, images: &[u8], steps: usize) -> (Vec<f32>, [Vec<f32>; 3]) {
    let model = config.objective.model(Widths::TINY, 0);
    let init = model.net.layout.init(config.seed);
    let mut trainer = Trainer::new(be, model, config.clone(), &init, images, &[]);
    let losses = (0..steps).map(|_| read(be, &trainer.step(be))[0]).collect();
    (losses, [read(be, &trainer.params), read(be, &trainer.target), read(be, &trainer.ema)])
}

/// Adam moves each weight by about lr * sign(gradient): where a gradient is nearly zero, two runs
/// that sum in different orders may disagree on its sign, so the bound per weight is 2 lr per
/// step, and nearly all weights must agree far more closely.
fn assert_weights_agree(name: &str, a: &[f32], b: &[f32], lr: f32, steps: usize) {
    assert_close(name, a, b, 0.0, 2.0 * lr * steps as f32);
    let close = a.iter().zip(b).filter(|(x, y)| (*x - *y).abs() <= 1e-5 + 1e-4 * y.abs()).count();
    assert!(close as f64 >= 0.99 * a.len() as f64, "{name}: only {close} of {} weights agree", a.len());
}

#[test]
fn ct_steps_on_gpu_equal_cpu() {
    // Ten synthetic digits: the comparison needs no real data.
    let images: Vec<u8> = random_vec(10 * 784, 3).iter().map(|v| ((v + 1.0) * 127.5) as u8).collect();
    for (kind, metric) in [
        (CtKind::Original { s0: 2, s1: 150, mu0: 0.9 }, Metric::L2),
        (CtKind::Improved { s0: 10, s1: 1280 }, Metric::PseudoHuber { c: 0.03 }),
    ] {
        let config = config(kind, metric, 4);
        let steps = 3;
        let (gpu_losses, gpu_weights) = train(&gpu(), &config, &images, steps);
        let (cpu_losses, cpu_weights) = train(&cpu(), &config, &images, steps);
        assert_close(&format!("{kind:?} losses"), &gpu_losses, &cpu_losses, 2e-3, 1e-6);
        for (name, (a, b)) in ["online", "target", "ema"].iter().zip(gpu_weights.iter().zip(&cpu_weights)) {
            assert_weights_agree(name, a, b, config.lr, steps);
        }
    }
}

/// A short run of the tiny network on real digits at a fixed discretization (s0 = s1, so N(k)
/// does not move the goalposts): the mean loss of the last steps is well below that of the first.
#[test]
fn a_short_tiny_run_lowers_the_loss() {
    let mnist = consistency::data::mnist::Mnist::load_split("data/mnist", consistency::data::mnist::Split::Train)
        .expect("MNIST in data/mnist (scripts/fetch-mnist)");
    let images = &mnist.images[..2000 * 784];
    let be = cpu();
    let mut config = TrainConfig { batch: 16, lr: 1e-3, seed: 4, ..TrainConfig::improved(1) };
    config.schedule.kind = CtKind::Improved { s0: 20, s1: 20 };
    let (losses, _) = train(&be, &config, images, 200);
    let mean = |l: &[f32]| l.iter().sum::<f32>() / l.len() as f32;
    let (first, last) = (mean(&losses[..40]), mean(&losses[160..]));
    assert!(last < 0.7 * first, "mean loss went from {first} (first 40 steps) to {last} (last 40)");
}

#[test]
fn run_reads_the_mean_loss_of_a_chunk_and_refuses_a_non_finite_one() {
    let images: Vec<u8> = random_vec(10 * 784, 5).iter().map(|v| ((v + 1.0) * 127.5) as u8).collect();
    let be = cpu();
    let config = config(CtKind::Original { s0: 2, s1: 150, mu0: 0.9 }, Metric::L2, 2);
    let model = || Model::new(Widths::TINY);
    let init = model().net.layout.init(config.seed);

    // The chunk's mean equals the mean of the same steps taken one at a time.
    let mut one_by_one = Trainer::new(&be, model(), config.clone(), &init, &images, &[]);
    let losses: Vec<f32> = (0..3).map(|_| read(&be, &one_by_one.step(&be))[0]).collect();
    let mut chunked = Trainer::new(&be, model(), config.clone(), &init, &images, &[]);
    let mean = pollster::block_on(chunked.run(&be, 3)).expect("finite loss");
    assert_eq!(chunked.step, 3);
    assert_close("chunk mean", &[mean], &[losses.iter().sum::<f32>() / 3.0], 1e-6, 0.0);

    // Weights blown up to infinity give a non-finite loss: an error that says so.
    let blown = vec![f32::MAX; init.len()];
    let mut broken = Trainer::new(&be, model(), config, &blown, &images, &[]);
    let error = pollster::block_on(broken.run(&be, 2)).expect_err("the loss is not finite");
    assert!(error.to_string().contains("the loss became"), "{error}");
}

/// A step split into slices of the batch (as the page's CPU workers split it), their gradients
/// summed and then applied, follows the same run as whole steps, up to float summation order;
/// and a slice that does not start at row 0 is the same on the GPU as on the CPU.
#[test]
fn a_step_split_into_slices_follows_the_whole_batch() {
    let images: Vec<u8> = random_vec(12 * 784, 8).iter().map(|v| ((v + 1.0) * 127.5) as u8).collect();
    let config = config(CtKind::Improved { s0: 10, s1: 1280 }, Metric::PseudoHuber { c: 0.03 }, 6);
    let model = || Model::new(Widths::TINY);
    let init = model().net.layout.init(config.seed);
    let be = cpu();

    let mut whole = Trainer::new(&be, model(), config.clone(), &init, &images, &[]);
    let mut split = Trainer::new(&be, model(), config.clone(), &init, &images, &[]);
    for step in 0..3 {
        let loss = read(&be, &whole.step(&be))[0];
        let mut slices_loss = 0.0;
        let mut grads = vec![0.0; init.len()];
        for rows in [0..2, 2..3, 3..6] {
            slices_loss += read(&be, &split.gradients(&be, rows))[0];
            grads.iter_mut().zip(read(&be, split.grads())).for_each(|(g, s)| *g += s);
        }
        be.write(split.grads(), &grads);
        split.apply(&be);
        assert_close(&format!("loss of step {step}"), &[slices_loss], &[loss], 1e-5, 1e-7);
    }
    assert_eq!(split.step, 3);
    for (name, a, b) in [("online", &split.params, &whole.params), ("target", &split.target, &whole.target)] {
        assert_weights_agree(name, &read(&be, a), &read(&be, b), config.lr, 3);
    }

    let gpu = gpu();
    let mut on_gpu = Trainer::new(&gpu, model(), config.clone(), &init, &images, &[]);
    let mut on_cpu = Trainer::new(&be, model(), config, &init, &images, &[]);
    let gpu_loss = read(&gpu, &on_gpu.gradients(&gpu, 3..5))[0];
    let cpu_loss = read(&be, &on_cpu.gradients(&be, 3..5))[0];
    assert_close("slice loss", &[gpu_loss], &[cpu_loss], 2e-3, 1e-6);
    assert_close("slice gradient", &read(&gpu, on_gpu.grads()), &read(&be, on_cpu.grads()), 2e-2, 1e-4);
}

/// The EDM teacher's denoising score matching (section 4): the same steps on both backends, and
/// the loss of a short tiny run on real digits falls.
#[test]
fn teacher_steps_on_gpu_equal_cpu_and_a_short_run_lowers_the_loss() {
    let images: Vec<u8> = random_vec(10 * 784, 6).iter().map(|v| ((v + 1.0) * 127.5) as u8).collect();
    let config = TrainConfig { batch: 4, lr: 1e-3, seed: 7, ..TrainConfig::teacher(100) };
    let (gpu_losses, gpu_weights) = train(&gpu(), &config, &images, 3);
    let (cpu_losses, cpu_weights) = train(&cpu(), &config, &images, 3);
    assert_close("teacher losses", &gpu_losses, &cpu_losses, 2e-3, 1e-6);
    assert_weights_agree("teacher online", &gpu_weights[0], &cpu_weights[0], config.lr, 3);

    let mnist = consistency::data::mnist::Mnist::load_split("data/mnist", consistency::data::mnist::Split::Train)
        .expect("MNIST in data/mnist (scripts/fetch-mnist)");
    let config = TrainConfig { batch: 16, lr: 1e-3, seed: 4, ..TrainConfig::teacher(200) };
    let (losses, _) = train(&cpu(), &config, &mnist.images[..2000 * 784], 200);
    let mean = |l: &[f32]| l.iter().sum::<f32>() / l.len() as f32;
    let (first, last) = (mean(&losses[..40]), mean(&losses[160..]));
    println!("teacher, tiny, batch 16: mean loss {first} (first 40 steps) -> {last} (last 40)");
    assert!(last < 0.7 * first, "mean loss went from {first} (first 40 steps) to {last} (last 40)");
}

/// Three steps of the run saved in `start`: their losses and the online weights after them.
fn resumed_steps<B: Backend>(be: &B, start: &Checkpoint, images: &[u8]) -> (Vec<f32>, Vec<f32>) {
    let mut trainer = Trainer::resume(be, start, images, &[]);
    let losses = (0..3).map(|_| read(be, &trainer.step(be))[0]).collect();
    (losses, read(be, &trainer.params))
}

/// Consistency distillation (Algorithm 2) from a teacher: the same steps on both backends with
/// either solver, and the student starts as the teacher's weights.
#[test]
fn distillation_steps_on_gpu_equal_cpu() {
    let images: Vec<u8> = random_vec(10 * 784, 12).iter().map(|v| ((v + 1.0) * 127.5) as u8).collect();
    let teacher = Checkpoint::start(Widths::TINY, 0, TrainConfig { seed: 5, ..TrainConfig::teacher(10) });
    for solver in [Solver::Heun, Solver::Euler] {
        let config = TrainConfig { batch: 4, lr: 1e-3, seed: 3, ..TrainConfig::distillation(10, solver) };
        let start = Checkpoint::from_teacher(&teacher, config.clone()).unwrap();
        assert_eq!(start.states[0], teacher.ema(), "the student starts as the teacher");
        let (gpu_losses, gpu_online) = resumed_steps(&gpu(), &start, &images);
        let (cpu_losses, cpu_online) = resumed_steps(&cpu(), &start, &images);
        assert!(cpu_losses.iter().all(|l| l.is_finite() && *l > 0.0), "{solver:?}: {cpu_losses:?}");
        assert_close(&format!("{solver:?} losses"), &gpu_losses, &cpu_losses, 2e-3, 1e-6);
        assert_weights_agree(&format!("{solver:?} online"), &gpu_online, &cpu_online, config.lr, 3);
    }
}

/// Three steps of the run saved in `start` with labels: their losses and the online weights.
fn labelled_steps<B: Backend>(be: &B, start: &Checkpoint, images: &[u8], labels: &[u8]) -> (Vec<f32>, Vec<f32>) {
    let mut trainer = Trainer::resume(be, start, images, labels);
    let losses = (0..3).map(|_| read(be, &trainer.step(be))[0]).collect();
    (losses, read(be, &trainer.params))
}

/// Class-conditional training (section 8): a teacher's and a distillation's steps with labels
/// (some dropped) are the same on both backends, and the labels reach the network: the label
/// embedding, zero at the start, moves.
#[test]
fn conditional_steps_on_gpu_equal_cpu() {
    let images: Vec<u8> = random_vec(10 * 784, 14).iter().map(|v| ((v + 1.0) * 127.5) as u8).collect();
    let labels: Vec<u8> = (0..10).collect();
    let teacher_config = TrainConfig { batch: 6, lr: 1e-3, seed: 9, label_dropout: 0.3, ..TrainConfig::teacher(10) };
    let teacher = Checkpoint::start(Widths::TINY, 10, teacher_config.clone());
    let (gpu_losses, gpu_online) = labelled_steps(&gpu(), &teacher, &images, &labels);
    let (cpu_losses, cpu_online) = labelled_steps(&cpu(), &teacher, &images, &labels);
    assert_close("conditional teacher losses", &gpu_losses, &cpu_losses, 2e-3, 1e-6);
    assert_weights_agree("conditional teacher online", &gpu_online, &cpu_online, teacher_config.lr, 3);
    let layout = teacher.model().net.layout;
    let label = layout.params.iter().find(|p| p.name == "label.weight").expect("a label embedding");
    assert!(teacher.states[0][label.offset..label.offset + label.len()].iter().all(|v| *v == 0.0));
    let moved = cpu_online[label.offset..label.offset + label.len()].iter().filter(|v| **v != 0.0).count();
    assert!(moved > 0, "the label embedding never moved: the labels do not reach the network");

    // Distilled from the teacher with classifier-free guidance.
    let mut config = TrainConfig { batch: 4, lr: 1e-3, seed: 3, ..TrainConfig::distillation(10, Solver::Heun) };
    if let Objective::Distillation { guidance, .. } = &mut config.objective {
        *guidance = 2.0;
    }
    let start = Checkpoint::from_teacher(&teacher, config.clone()).unwrap();
    assert_eq!(start.classes, 10, "a conditional teacher gives a conditional student");
    let (gpu_losses, gpu_online) = labelled_steps(&gpu(), &start, &images, &labels);
    let (cpu_losses, cpu_online) = labelled_steps(&cpu(), &start, &images, &labels);
    assert_close("conditional distillation losses", &gpu_losses, &cpu_losses, 2e-3, 1e-6);
    assert_weights_agree("conditional distillation online", &gpu_online, &cpu_online, config.lr, 3);
}

/// Progressive distillation (section 10): one whole stage (two steps of a student of 8 steps)
/// and the stage change after it are the same on both backends; the stage change makes the
/// student the teacher, and the next stage trains a student of half the steps.
#[test]
fn a_progressive_distillation_stage_on_gpu_equals_cpu() {
    let images: Vec<u8> = random_vec(10 * 784, 15).iter().map(|v| ((v + 1.0) * 127.5) as u8).collect();
    let teacher = Checkpoint::start(Widths::TINY, 0, TrainConfig { seed: 5, ..TrainConfig::teacher(10) });
    // Stages of 2 steps: students of 8, 4, 2, 1 steps.
    let config = TrainConfig { batch: 4, lr: 1e-3, seed: 3, ..TrainConfig::progressive(8) };
    assert_eq!(config.objective, Objective::Progressive { teacher_steps: 16, stage_steps: 2 });
    assert_eq!((0..9).map(|k| config.student_steps(k)).collect::<Vec<_>>(), [8, 8, 4, 4, 2, 2, 1, 1, 1]);
    let start = Checkpoint::from_teacher(&teacher, config.clone()).unwrap();
    assert_eq!(start.teacher.as_deref(), Some(teacher.ema()), "the first stage's teacher is the denoiser");
    let run = |be: &dyn Fn() -> (Vec<f32>, Checkpoint)| be();
    let gpu_run = || {
        let be = gpu();
        let mut trainer = Trainer::resume(&be, &start, &images, &[]);
        let losses: Vec<f32> = (0..3).map(|_| read(&be, &trainer.step(&be))[0]).collect();
        (losses, pollster::block_on(trainer.checkpoint(&be)).unwrap())
    };
    let cpu_run = || {
        let be = cpu();
        let mut trainer = Trainer::resume(&be, &start, &images, &[]);
        let losses: Vec<f32> = (0..3).map(|_| read(&be, &trainer.step(&be))[0]).collect();
        (losses, pollster::block_on(trainer.checkpoint(&be)).unwrap())
    };
    let ((gpu_losses, gpu_state), (cpu_losses, cpu_state)) = (run(&gpu_run), run(&cpu_run));
    assert!(cpu_losses.iter().all(|l| l.is_finite() && *l > 0.0), "{cpu_losses:?}");
    assert_close("progressive losses", &gpu_losses, &cpu_losses, 2e-3, 1e-6);
    assert_weights_agree("progressive online", &gpu_state.states[0], &cpu_state.states[0], config.lr, 3);
    // After step 2 the stage's student (its sampling EMA then) became the teacher.
    let new_teacher = cpu_state.teacher.as_ref().unwrap();
    assert_ne!(new_teacher.as_slice(), teacher.ema(), "the teacher moved on to the student");
    assert_weights_agree("progressive teacher", gpu_state.teacher.as_ref().unwrap(), new_teacher, config.lr, 3);
    // The saved run resumes into the same teacher.
    let bytes = cpu_state.to_bytes().unwrap();
    assert_eq!(Checkpoint::from_bytes(&bytes).unwrap(), cpu_state);
}

/// Consistency tuning (section 11): steps from a teacher's weights at two stages are the same
/// on both backends, with the pixel and the perceptual distance.
#[test]
fn tuning_steps_on_gpu_equal_cpu() {
    let images: Vec<u8> = random_vec(10 * 784, 16).iter().map(|v| ((v + 1.0) * 127.5) as u8).collect();
    let teacher = Checkpoint::start(Widths::TINY, 0, TrainConfig { seed: 6, ..TrainConfig::teacher(10) });
    for distance in [TrainConfig::tuning(1).distance, Distance::Perceptual] {
        // Stages of one step: the three steps see stages 0, 1 and 2.
        let config = TrainConfig { batch: 4, seed: 8, distance, ..TrainConfig::tuning(5) };
        assert_eq!(config.objective, Objective::Tuning { q: 2.0, stage_steps: 1 });
        let stages: Vec<u32> = (0..8).map(|k| config.stage(k)).collect();
        assert_eq!(stages, [0, 1, 2, 3, 4, 4, 4, 4], "past K, tuning stays at its last stage");
        let start = Checkpoint::from_teacher(&teacher, config.clone()).unwrap();
        assert!(start.teacher.is_none(), "tuning's teacher is the online network itself");
        assert_eq!(start.states[0], teacher.ema(), "tuning starts from the teacher's weights");
        let (gpu_losses, gpu_online) = resumed_steps(&gpu(), &start, &images);
        let (cpu_losses, cpu_online) = resumed_steps(&cpu(), &start, &images);
        assert!(cpu_losses.iter().all(|l| l.is_finite() && *l > 0.0), "{distance:?}: {cpu_losses:?}");
        assert_close(&format!("tuning {distance:?} losses"), &gpu_losses, &cpu_losses, 2e-3, 1e-6);
        assert_weights_agree(&format!("tuning {distance:?} online"), &gpu_online, &cpu_online, config.lr, 3);
    }
}

/// Consistency distillation with the perceptual distance: the same loss and gradient on both
/// backends. (The gradient, not weights after Adam steps: the perceptual loss of an untrained
/// student on noise images leaves many weights with gradients near zero, whose Adam steps of
/// +-lr follow the sign of rounding noise.)
#[test]
fn perceptual_distillation_gradients_on_gpu_equal_cpu() {
    let images: Vec<u8> = random_vec(10 * 784, 17).iter().map(|v| ((v + 1.0) * 127.5) as u8).collect();
    let teacher = Checkpoint::start(Widths::TINY, 0, TrainConfig { seed: 5, ..TrainConfig::teacher(10) });
    let config = TrainConfig {
        batch: 3,
        lr: 1e-3,
        seed: 3,
        distance: Distance::Perceptual,
        ..TrainConfig::distillation(10, Solver::Euler)
    };
    let start = Checkpoint::from_teacher(&teacher, config).unwrap();
    let (g, c) = (gpu(), cpu());
    let (mut on_gpu, mut on_cpu) =
        (Trainer::resume(&g, &start, &images, &[]), Trainer::resume(&c, &start, &images, &[]));
    let (gpu_loss, cpu_loss) = (read(&g, &on_gpu.gradients(&g, 0..3))[0], read(&c, &on_cpu.gradients(&c, 0..3))[0]);
    assert!(cpu_loss.is_finite() && cpu_loss > 0.0, "{cpu_loss}");
    assert_close("perceptual CD loss", &[gpu_loss], &[cpu_loss], 2e-3, 1e-7);
    let (gpu_grad, cpu_grad) = (read(&g, on_gpu.grads()), read(&c, on_cpu.grads()));
    let largest = cpu_grad.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    assert!(largest > 0.0, "no gradient reaches the student");
    assert_close("perceptual CD gradient", &gpu_grad, &cpu_grad, 2e-2, 1e-3 * largest);
}
