//! One-step and multistep sampling (section 3): closed form with a zero network, GPU = CPU,
//! seeded, independent of batch size, and bad time points refused.

mod common;

use common::*;
use consistency::backend::prelude::*;
use consistency::backend::RandomKey;
use consistency::model::Model;
use consistency::nn::Widths;
use consistency::random;
use consistency::sample::{sample, sample_rows};
use consistency::schedule::{c_skip, T};

fn draw<B: Backend>(be: &B, model: &Model, params: &[f32], count: usize, points: &[f64], seed: u64) -> Vec<f32> {
    let p = be.upload(params, &[params.len()]);
    read(be, &sample(be, model, &p, count, points, seed).unwrap())
}

#[test]
fn one_step_with_a_zero_network_is_c_skip_times_the_start() {
    // With every weight zero, F = 0, so f(x_T, T) = c_skip(T) x_T with x_T = T z.
    let model = Model::new(Widths::TINY);
    let zeros = vec![0.0; model.net.layout.len];
    let out = draw(&cpu(), &model, &zeros, 2, &[], 5);
    let key = RandomKey { seed: 5, step: 0, stream: 0 };
    let expected: Vec<f32> = (0..out.len() as u32).map(|i| (c_skip(T) * T) as f32 * random::normal(key, i)).collect();
    assert_close("f(T z, T)", &out, &expected, 1e-6, 0.0);
}

#[test]
fn samples_on_gpu_equal_cpu_and_do_not_depend_on_batch_size() {
    let model = Model::new(Widths::TINY);
    let params = model.net.layout.init(9);
    for points in [&[][..], &[0.8][..], &[20.0, 2.0, 0.5][..]] {
        let on_gpu = draw(&gpu(), &model, &params, 3, points, 42);
        let on_cpu = draw(&cpu(), &model, &params, 3, points, 42);
        assert_close(&format!("steps {points:?}"), &on_gpu, &on_cpu, 1e-3, 1e-4);
        let fewer = draw(&cpu(), &model, &params, 2, points, 42);
        assert_eq!(&on_cpu[..fewer.len()], &fewer[..], "sample i must not depend on the batch size");
    }
}

#[test]
fn the_seed_decides_the_samples() {
    let model = Model::new(Widths::TINY);
    let params = model.net.layout.init(9);
    let be = cpu();
    assert_eq!(draw(&be, &model, &params, 2, &[1.0], 1), draw(&be, &model, &params, 2, &[1.0], 1));
    assert_ne!(draw(&be, &model, &params, 2, &[1.0], 1), draw(&be, &model, &params, 2, &[1.0], 2));
}

#[test]
fn bad_time_points_are_refused() {
    let model = Model::new(Widths::TINY);
    let be = cpu();
    let p = be.zeros(&[model.net.layout.len]);
    for points in [&[80.0][..], &[0.001][..], &[1.0, 2.0][..], &[f64::NAN][..]] {
        let err = sample(&be, &model, &p, 1, points, 0).expect_err("refused").to_string();
        assert!(err.contains("time point"), "{points:?}: {err}");
    }
}

/// Slices of a batch (how the page's CPU workers share a sampling call) are exactly the rows of
/// the whole batch, on both backends.
#[test]
fn a_batch_sampled_in_slices_is_the_whole_batch() {
    let model = Model::new(Widths::TINY);
    let params = model.net.layout.init(9);
    let slices = |be: &dyn Fn(std::ops::Range<usize>) -> Vec<f32>| [be(0..2), be(2..3), be(3..5)].concat();
    for points in [&[][..], &[2.0, 0.5][..]] {
        let whole = draw(&cpu(), &model, &params, 5, points, 7);
        let cpu = cpu();
        let p = cpu.upload(&params, &[params.len()]);
        let on_cpu = slices(&|rows| read(&cpu, &sample_rows(&cpu, &model, &p, rows, points, 7, None).unwrap()));
        assert_eq!(on_cpu, whole, "steps {points:?}");
        let gpu = gpu();
        let p = gpu.upload(&params, &[params.len()]);
        let on_gpu = slices(&|rows| read(&gpu, &sample_rows(&gpu, &model, &p, rows, points, 7, None).unwrap()));
        assert_close(&format!("steps {points:?} on the GPU"), &on_gpu, &whole, 1e-3, 1e-4);
    }
}

/// Section 8's class-conditional sampling on the shipped distilled model
/// (`assets/distilled-tiny.safetensors`, distilled from a teacher guided with w = 3): asked for
/// a digit, the consistency model in one step and its guided teacher (Heun) draw that digit, as
/// the project's classifier reads them, on most samples (both measure about 70% over 500
/// samples); and an unconditional model refuses a digit.
#[test]
fn conditional_sampling_honours_the_label() {
    use consistency::checkpoint::Checkpoint;
    use consistency::eval::Evaluator;
    use consistency::recipe::Objective;
    use consistency::sample::Sampler;
    let be = cpu();
    let saved = Checkpoint::from_bytes(&std::fs::read("assets/distilled-tiny.safetensors").unwrap()).unwrap();
    let (student, teacher) = (saved.model(), Model::denoiser(saved.widths).with_classes(saved.classes));
    assert!(student.is_conditional());
    let ema = be.upload(saved.ema(), &[saved.ema().len()]);
    let teacher_weights = saved.teacher.as_ref().expect("a distilled run carries its teacher");
    let teacher_weights = be.upload(teacher_weights, &[teacher_weights.len()]);
    let evaluator = Evaluator::shipped(&be).unwrap();
    let per_digit = 12;
    let Objective::Distillation { guidance, .. } = saved.config.objective else { panic!("a distilled run") };
    let guided = Sampler::for_model(&teacher, &[], "heun", 6).unwrap().with_guidance(&teacher, guidance).unwrap();
    let runs = [
        ("consistency model, 1 step", &student, &ema, Sampler::for_model(&student, &[], "", 0).unwrap()),
        ("guided teacher, heun 6 steps", &teacher, &teacher_weights, guided),
    ];
    for (name, model, params, sampler) in runs {
        let mut agreed = [0; 10];
        for digit in 0..10u8 {
            let x = sampler.sample(&be, model, params, 0..per_digit, 21, Some(digit)).unwrap();
            let images: Vec<f32> = read(&be, &x).into_iter().map(|v| v.clamp(-1.0, 1.0)).collect();
            let classes = pollster::block_on(evaluator.classify_host(&be, &images)).unwrap().classes;
            agreed[digit as usize] = classes.iter().filter(|&&c| c == digit).count();
        }
        let share = agreed.iter().sum::<usize>() as f64 / (10 * per_digit) as f64;
        println!("{name}: the classifier agrees on {:.0}% (per digit {agreed:?})", 100.0 * share);
        assert!(share > 0.55, "{name}: the classifier agrees on only {:.0}%: {agreed:?}", 100.0 * share);
    }

    let unconditional = Model::new(Widths::TINY);
    let params = be.upload(&unconditional.net.layout.init(1), &[unconditional.net.layout.len]);
    let sampler = Sampler::for_model(&unconditional, &[], "", 0).unwrap();
    let error = sampler.sample(&be, &unconditional, &params, 0..2, 0, Some(3)).unwrap_err().to_string();
    assert!(error.contains("unconditional"), "{error}");
}
