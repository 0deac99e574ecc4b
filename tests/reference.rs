//! The numbers the browser's CPU backend (this crate compiled to wasm32 with SIMD, run by
//! Chromium) must reproduce: `tests/web/cpu.test.mjs` runs the same training steps and sampling
//! batch in the page and compares them with `tests/fixtures/wasm-reference.txt`, which this test
//! keeps in step with the native CPU backend. Native and wasm differ only in rounding (FMA
//! kernels natively, libm against hand-written exp), so the comparison has tolerances, stated
//! in the file.
//!
//! After a change that moves these numbers on purpose: `UPDATE_REFERENCE=1 cargo test --test reference`.

mod common;

use common::*;
use consistency::backend::prelude::*;
use consistency::checkpoint::Checkpoint;
use consistency::data::mnist::{Mnist, Split};
use consistency::image::to_gray;
use consistency::model::Model;
use consistency::nn::Widths;
use consistency::recipe::{Recipe, RecipeKind};
use consistency::sample::sample;
use consistency::train::Trainer;

const FIXTURE: &str = "tests/fixtures/wasm-reference.txt";

/// The run the page starts (`Studio.restart` with these settings) and the steps it takes.
const STEPS: usize = 2;
/// The samples: the shipped pretrained model, this many digits from this seed, one step.
const SAMPLES: usize = 8;
const SAMPLE_SEED: u64 = 3;
/// How many leading online weights after the steps are recorded one by one.
const HEAD: usize = 32;

fn recipe() -> Recipe {
    Recipe {
        kind: RecipeKind::Improved,
        total_steps: 100,
        loss: None,
        s0: None,
        s1: None,
        label_dropout: None,
        distill_n: None,
        guidance: None,
        batch: 8,
        lr: Some(1e-3),
        seed: 5,
    }
}

/// Each line of the fixture: a name and its numbers.
fn compute() -> Vec<(String, Vec<f64>)> {
    let be = cpu();
    let mnist = Mnist::load_split("data/mnist", Split::Train).expect("MNIST in data/mnist (scripts/fetch-mnist)");
    let start = Checkpoint::start(Widths::TINY, 0, recipe().config().expect("valid recipe"));
    let mut trainer = Trainer::resume(&be, &start, &mnist.images, &[]);
    let losses: Vec<f64> = (0..STEPS).map(|_| read(&be, &trainer.step(&be))[0] as f64).collect();
    let online = read(&be, &trainer.params);
    let sum = online.iter().map(|&v| v as f64).sum::<f64>();
    let sumsq = online.iter().map(|&v| v as f64 * v as f64).sum::<f64>();
    // The head: the first values of the first parameter by name that has that many (the
    // browser test finds it by name in the checkpoint file, whose tensor order is its own).
    let layout = &trainer.model.net.layout;
    let first = layout.params.iter().filter(|p| p.len() >= HEAD).min_by_key(|p| &p.name).expect("a parameter");
    let head = &online[first.offset..first.offset + HEAD];

    let bytes = std::fs::read("assets/consistency-small.safetensors").expect("the shipped model");
    let pretrained = Checkpoint::from_bytes(&bytes).expect("a valid checkpoint");
    let model = Model::new(pretrained.widths);
    let ema = be.upload(pretrained.ema(), &[pretrained.ema().len()]);
    let digits = read(&be, &sample(&be, &model, &ema, SAMPLES, &[], SAMPLE_SEED).expect("valid time points"));
    vec![
        ("loss".into(), losses),
        ("online_sum".into(), vec![sum]),
        ("online_sumsq".into(), vec![sumsq]),
        ("online_head".into(), head.iter().map(|&v| v as f64).collect()),
        ("sample_gray".into(), to_gray(&digits).iter().map(|&v| v as f64).collect()),
    ]
}

fn render(lines: &[(String, Vec<f64>)]) -> String {
    let mut out = String::from(
        "# Written by tests/reference.rs from the native CPU backend; read by tests/web/cpu.test.mjs.\n\
         # Run: Studio.restart({widths: tiny, recipe: improved, totalSteps: 100, batch: 8, lr: 0.001, seed: 5}),\n\
         # MNIST's training set, 2 steps (one Studio.train(1) each); then the shipped model's\n\
         # Studio.sample(8, 3, {}). online_*: the online weights after the steps (the head: the\n\
         # first 32 values of the first tensor by name with that many). Tolerances: losses and sums 1e-4\n\
         # relative, each head weight within 1e-5 + 2 lr * steps (Adam's sign on a near-zero\n\
         # gradient), gray levels within 1.\n",
    );
    for (name, values) in lines {
        let values: Vec<String> = values.iter().map(|v| format!("{v}")).collect();
        out += &format!("{name} {}\n", values.join(" "));
    }
    out
}

fn parse(text: &str) -> Vec<(String, Vec<f64>)> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let mut words = l.split_whitespace();
            let name = words.next().expect("a name").to_string();
            (name, words.map(|w| w.parse().expect("a number")).collect())
        })
        .collect()
}

#[test]
fn the_wasm_reference_matches_the_native_cpu_backend() {
    let now = compute();
    if std::env::var_os("UPDATE_REFERENCE").is_some() {
        std::fs::write(FIXTURE, render(&now)).expect("write the fixture");
    }
    let text = std::fs::read_to_string(FIXTURE).expect("the fixture (UPDATE_REFERENCE=1 writes it)");
    let kept = parse(&text);
    assert_eq!(kept.iter().map(|l| &l.0).collect::<Vec<_>>(), now.iter().map(|l| &l.0).collect::<Vec<_>>());
    let lr = recipe().lr.expect("the fixture sets lr") as f64;
    for ((name, kept), (_, now)) in kept.iter().zip(&now) {
        assert_eq!(kept.len(), now.len(), "{name}: length");
        for (i, (k, n)) in kept.iter().zip(now).enumerate() {
            let bound = match name.as_str() {
                "online_head" => 1e-5 + 2.0 * lr * STEPS as f64,
                "sample_gray" => 1.0,
                _ => 1e-4 * k.abs(),
            };
            assert!((k - n).abs() <= bound, "{name}[{i}]: the fixture has {k}, the CPU backend gives {n}");
        }
    }
}
