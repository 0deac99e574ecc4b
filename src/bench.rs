//! Engine benchmarks: throughput of the convolution kernels and time of a whole-network
//! forward + backward, on any backend. Numbers only; callers print them (`cm bench`, and later
//! the bench page). Timing needs a clock the caller supplies (`std::time` natively,
//! `performance.now()` in the browser), and each measurement ends with a readback so queued
//! GPU work is included.

use std::cell::RefCell;

use crate::backend::{Backend, Conv2d};
use crate::image::{digit_shape, PIXELS, SIDE};
use crate::model::Model;
use crate::nn::{UNet, Widths};
use crate::recipe::TrainConfig;
use crate::sample::sample;
use crate::schedule::T;
use crate::train::Trainer;

/// Seconds since some fixed point.
pub type Clock<'a> = &'a dyn Fn() -> f64;

/// One convolution's measured throughput.
#[derive(Clone, Debug)]
pub struct ConvTiming {
    pub label: String,
    pub geometry: Conv2d,
    /// GFLOP/s of forward, backward to the input, backward to the weights.
    pub forward: f64,
    pub backward_input: f64,
    pub backward_weight: f64,
}

/// The convolutions that dominate the reference U-Net at `widths`, at batch `batch`.
pub fn network_convs(widths: Widths, batch: usize) -> Vec<(String, Conv2d)> {
    let [c0, c1, c2] = widths.0;
    let conv = |cin, cout, side, kernel, stride| Conv2d {
        batch,
        in_channels: cin,
        out_channels: cout,
        height: side,
        width: side,
        kernel,
        stride,
    };
    // The network's three resolutions: the digit, then halved twice.
    let (s0, s1, s2) = (SIDE, SIDE / 2, SIDE / 4);
    vec![
        (format!("3x3 {c0}->{c0} @{s0}"), conv(c0, c0, s0, 3, 1)),
        (format!("3x3 {}->{c0} @{s0}", c1 + c0), conv(c1 + c0, c0, s0, 3, 1)),
        (format!("3x3 s2 {c0}->{c0} {s0}->{s1}"), conv(c0, c0, s0, 3, 2)),
        (format!("3x3 {c1}->{c1} @{s1}"), conv(c1, c1, s1, 3, 1)),
        (format!("3x3 {}->{c2} @{s2}", 2 * c2), conv(2 * c2, c2, s2, 3, 1)),
        (format!("1x1 {}->{c0} @{s0}", c1 + c0), conv(c1 + c0, c0, s0, 1, 1)),
    ]
}

/// What one run of a measured piece of work costs.
#[derive(Clone, Copy, Debug)]
pub struct RunCost {
    pub seconds: f64,
    /// On a backend with a device queue: compute dispatches per run, and queue submissions per
    /// run (the final read-back's own submission not counted; a fraction when several runs
    /// share one submission).
    pub dispatches: Option<f64>,
    pub submissions: Option<f64>,
}

/// The cost of one call of `run`, over `iters` calls after one warm-up; `done` is a tensor the
/// work writes, read back to wait for it.
async fn cost_per_run<B: Backend>(
    be: &B,
    done: &crate::backend::BTensor<B>,
    iters: usize,
    now: Clock<'_>,
    run: &dyn Fn(),
) -> crate::Result<RunCost> {
    let probe = done.view(0, &[1]);
    run();
    be.read(&probe).await?;
    let (start, before) = (now(), be.work_counts());
    for _ in 0..iters {
        run();
    }
    be.flush();
    let after = be.work_counts();
    be.read(&probe).await?;
    let seconds = (now() - start) / iters as f64;
    let per_run =
        |count: fn(&crate::backend::WorkCounts) -> u64| Some((count(&after?) - count(&before?)) as f64 / iters as f64);
    Ok(RunCost { seconds, dispatches: per_run(|c| c.dispatches), submissions: per_run(|c| c.submissions) })
}

async fn seconds_per_run<B: Backend>(
    be: &B,
    done: &crate::backend::BTensor<B>,
    iters: usize,
    now: Clock<'_>,
    run: &dyn Fn(),
) -> crate::Result<f64> {
    Ok(cost_per_run(be, done, iters, now, run).await?.seconds)
}

/// Measures each convolution's three kernels over `iters` runs after one warm-up.
pub async fn bench_convs<B: Backend>(
    be: &B,
    convs: &[(String, Conv2d)],
    iters: usize,
    now: Clock<'_>,
) -> crate::Result<Vec<ConvTiming>> {
    let mut out = Vec::new();
    for (label, g) in convs {
        let x = be.zeros(&g.input_shape());
        let w = be.zeros(&g.weight_shape());
        let b = be.zeros(&[g.out_channels]);
        let y = be.zeros(&g.output_shape());
        let gflops = |seconds: f64| g.flops() / seconds / 1e9;
        let forward = seconds_per_run(be, &y, iters, now, &|| be.conv2d(g, &x, &w, &b, &y)).await?;
        let backward_input = seconds_per_run(be, &x, iters, now, &|| be.conv2d_backward_input(g, &y, &w, &x)).await?;
        let backward_weight = seconds_per_run(be, &w, iters, now, &|| be.conv2d_backward_weight(g, &y, &x, &w)).await?;
        out.push(ConvTiming {
            label: label.clone(),
            geometry: *g,
            forward: gflops(forward),
            backward_input: gflops(backward_input),
            backward_weight: gflops(backward_weight),
        });
    }
    Ok(out)
}

/// Seconds for one forward + backward of the U-Net at `widths` on a batch of `batch` 28x28
/// images (mean over `iters` runs after one warm-up).
pub async fn bench_network<B: Backend>(
    be: &B,
    widths: Widths,
    batch: usize,
    iters: usize,
    now: Clock<'_>,
) -> crate::Result<f64> {
    let net = UNet::new(widths);
    let params = be.upload(&net.layout.init(0), &[net.layout.len]);
    let grads = be.zeros(&[net.layout.len]);
    let x = be.zeros(&digit_shape(batch));
    let c_noise = be.zeros(&[batch]);
    let dy = be.zeros(&digit_shape(batch));
    let step = || {
        let (_, cache) = net.forward(be, &params, &x, &c_noise, None);
        net.backward(be, &params, &grads, &cache, &dy);
    };
    seconds_per_run(be, &grads, iters, now, &step).await
}

/// Seconds per consistency-training step (the default improved-CT recipe) of the model at
/// `widths` with batch `batch`, on synthetic digits (mean over `iters` steps after one warm-up).
pub async fn bench_train_step<B: Backend>(
    be: &B,
    widths: Widths,
    batch: usize,
    iters: usize,
    now: Clock<'_>,
) -> crate::Result<RunCost> {
    let model = Model::new(widths);
    let init = model.net.layout.init(0);
    let images: Vec<u8> = (0..batch * PIXELS).map(|i| (i * 37 % 256) as u8).collect();
    let config = TrainConfig { batch, ..TrainConfig::improved(1000) };
    let trainer = RefCell::new(Trainer::new(be, model, config, &init, &images, &[]));
    let params = trainer.borrow().params.clone();
    cost_per_run(be, &params, iters, now, &|| {
        trainer.borrow_mut().step(be);
    })
    .await
}

/// Seconds to draw `count` samples with one network evaluation each (`steps` = 1) or more.
pub async fn bench_sampling<B: Backend>(
    be: &B,
    widths: Widths,
    count: usize,
    steps: usize,
    iters: usize,
    now: Clock<'_>,
) -> crate::Result<RunCost> {
    let model = Model::new(widths);
    let params = be.upload(&model.net.layout.init(0), &[model.net.layout.len]);
    let time_points: Vec<f64> = (1..steps).map(|s| T / 4f64.powi(s as i32)).collect();
    let out = sample(be, &model, &params, count, &time_points, 0)?;
    let last = RefCell::new(out);
    let done = last.borrow().clone();
    cost_per_run(be, &done, iters, now, &|| {
        *last.borrow_mut() = sample(be, &model, &params, count, &time_points, 0).expect("valid time points");
    })
    .await
}
