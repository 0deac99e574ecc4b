//! Convolution, linear and channel-sum kernels: the CPU twins against plain f64 loops written
//! here, the GPU kernels against the CPU twins, and every backward against central finite
//! differences of its forward, on both backends.

mod common;

use common::*;
use consistency::backend::prelude::*;
use consistency::backend::{BTensor, Conv2d};

fn conv(
    batch: usize,
    in_channels: usize,
    out_channels: usize,
    height: usize,
    width: usize,
    kernel: usize,
    stride: usize,
) -> Conv2d {
    Conv2d { batch, in_channels, out_channels, height, width, kernel, stride }
}

/// Odd shapes: channel counts that are not multiples of 4, non-square images, Cout > 32 (two
/// M tiles), N over several 64-wide tiles, K over several 16-deep steps, and both kernel sizes
/// and strides.
fn geometries() -> Vec<Conv2d> {
    vec![
        conv(3, 3, 37, 5, 7, 3, 1),
        conv(2, 5, 6, 9, 11, 3, 2),
        conv(3, 6, 5, 5, 7, 1, 1),
        conv(2, 4, 33, 7, 5, 1, 2),
        conv(1, 17, 8, 6, 6, 3, 2),
        conv(2, 7, 70, 8, 9, 3, 1),
        // Weight gradient over K = 3 * 30 * 30 = 2700: split-K with a short last slice.
        conv(3, 5, 6, 30, 30, 3, 1),
    ]
}

fn numel(shape: [usize; 4]) -> usize {
    shape.iter().product()
}

/// Absolute tolerance for a sum of `terms` products of values in [-1, 1]: f32 rounding grows
/// about with the square root of the length.
fn atol(terms: usize) -> f32 {
    1e-5 * (terms as f32).sqrt().max(1.0)
}

const RTOL: f32 = 1e-4;

/// The input pixel that output pixel `o` reads through tap `t`, if not padding.
fn source(g: &Conv2d, o: usize, t: usize, len: usize) -> Option<usize> {
    let i = (o * g.stride + t) as isize - g.pad() as isize;
    (i >= 0 && (i as usize) < len).then_some(i as usize)
}

/// Visits every (input index, weight index, output index) triple of a convolution: the three
/// references below are this one loop, accumulating into different places.
fn for_each_tap(g: &Conv2d, mut f: impl FnMut(usize, usize, usize)) {
    let (oh, ow, k) = (g.out_height(), g.out_width(), g.kernel);
    for b in 0..g.batch {
        for co in 0..g.out_channels {
            for oy in 0..oh {
                for ox in 0..ow {
                    let yi = ((b * g.out_channels + co) * oh + oy) * ow + ox;
                    for ci in 0..g.in_channels {
                        for ky in 0..k {
                            for kx in 0..k {
                                let (Some(iy), Some(ix)) = (source(g, oy, ky, g.height), source(g, ox, kx, g.width))
                                else {
                                    continue;
                                };
                                let xi = ((b * g.in_channels + ci) * g.height + iy) * g.width + ix;
                                let wi = ((co * g.in_channels + ci) * k + ky) * k + kx;
                                f(xi, wi, yi);
                            }
                        }
                    }
                }
            }
        }
    }
}

fn conv_reference(g: &Conv2d, x: &[f32], w: &[f32], b: &[f32]) -> Vec<f32> {
    let pixels = g.out_height() * g.out_width();
    let mut y: Vec<f64> = (0..numel(g.output_shape())).map(|i| b[(i / pixels) % g.out_channels] as f64).collect();
    for_each_tap(g, |xi, wi, yi| y[yi] += x[xi] as f64 * w[wi] as f64);
    y.into_iter().map(|v| v as f32).collect()
}

fn conv_backward_input_reference(g: &Conv2d, dy: &[f32], w: &[f32]) -> Vec<f32> {
    let mut dx = vec![0.0f64; numel(g.input_shape())];
    for_each_tap(g, |xi, wi, yi| dx[xi] += dy[yi] as f64 * w[wi] as f64);
    dx.into_iter().map(|v| v as f32).collect()
}

fn conv_backward_weight_reference(g: &Conv2d, dy: &[f32], x: &[f32]) -> Vec<f32> {
    let mut dw = vec![0.0f64; numel(g.weight_shape())];
    for_each_tap(g, |xi, wi, yi| dw[wi] += dy[yi] as f64 * x[xi] as f64);
    dw.into_iter().map(|v| v as f32).collect()
}

/// The three convolution ops of `g` on one backend, from the same inputs.
fn conv_ops<B: Backend>(be: &B, g: &Conv2d, x: &[f32], w: &[f32], b: &[f32], dy: &[f32]) -> [Vec<f32>; 3] {
    let (tx, tw, tb) = (be.upload(x, &g.input_shape()), be.upload(w, &g.weight_shape()), be.upload(b, &[b.len()]));
    let tdy = be.upload(dy, &g.output_shape());
    let (y, dx, dw) = (be.zeros(&g.output_shape()), be.zeros(&g.input_shape()), be.zeros(&g.weight_shape()));
    be.conv2d(g, &tx, &tw, &tb, &y);
    be.conv2d_backward_input(g, &tdy, &tw, &dx);
    be.conv2d_backward_weight(g, &tdy, &tx, &dw);
    [read(be, &y), read(be, &dx), read(be, &dw)]
}

#[test]
fn conv_kernels_match_reference_and_cpu() {
    let (gp, cp) = (gpu(), cpu());
    for (seed, g) in geometries().iter().enumerate() {
        let seed = 10 * seed as u64;
        let x = random_vec(numel(g.input_shape()), seed);
        let w = random_vec(numel(g.weight_shape()), seed + 1);
        let b = random_vec(g.out_channels, seed + 2);
        let dy = random_vec(numel(g.output_shape()), seed + 3);
        let expected = [
            conv_reference(g, &x, &w, &b),
            conv_backward_input_reference(g, &dy, &w),
            conv_backward_weight_reference(g, &dy, &x),
        ];
        let taps = g.kernel * g.kernel;
        // Length of each output's sum: forward over (Cin, taps), dx over (Cout, taps), dw over
        // every output pixel.
        let terms = [g.in_channels * taps, g.out_channels * taps, g.batch * g.out_height() * g.out_width()];
        let cpu_values = conv_ops(&cp, g, &x, &w, &b, &dy);
        let gpu_values = conv_ops(&gp, g, &x, &w, &b, &dy);
        for (i, op) in ["conv2d", "conv2d_backward_input", "conv2d_backward_weight"].iter().enumerate() {
            assert_close(&format!("cpu {op} {g:?}"), &cpu_values[i], &expected[i], RTOL, atol(terms[i]));
            assert_close(&format!("gpu {op} {g:?}"), &gpu_values[i], &cpu_values[i], RTOL, atol(terms[i]));
        }
    }
}

/// Kernels index relative to their bindings, so weights and gradients can be views into one
/// flat parameter buffer (at offsets aligned for storage bindings: 64 floats).
#[test]
fn conv_on_offset_views() {
    let (gp, g) = (gpu(), conv(2, 5, 6, 9, 11, 3, 2));
    let (wlen, ylen) = (numel(g.weight_shape()), numel(g.output_shape()));
    let x = random_vec(numel(g.input_shape()), 1);
    let w = random_vec(wlen, 2);
    let b = random_vec(g.out_channels, 3);
    let dy = random_vec(ylen, 4);
    let mut params = random_vec(64 + wlen + 64, 5);
    params[64..64 + wlen].copy_from_slice(&w);
    let flat = gp.upload(&params, &[params.len()]);
    let tw = flat.view(64, &g.weight_shape());
    let grads = gp.zeros(&[64 + wlen + 7]);
    let dw = grads.view(64, &g.weight_shape());
    let (tx, tb, tdy, y) = (
        gp.upload(&x, &g.input_shape()),
        gp.upload(&b, &[6]),
        gp.upload(&dy, &g.output_shape()),
        gp.zeros(&g.output_shape()),
    );
    gp.conv2d(&g, &tx, &tw, &tb, &y);
    gp.conv2d_backward_weight(&g, &tdy, &tx, &dw);
    assert_close("conv2d on a view", &read(&gp, &y), &conv_reference(&g, &x, &w, &b), RTOL, atol(45));
    let grads = read(&gp, &grads);
    assert_close(
        "dw into a view",
        &grads[64..64 + wlen],
        &conv_backward_weight_reference(&g, &dy, &x),
        RTOL,
        atol(100),
    );
    assert!(grads[..64].iter().chain(&grads[64 + wlen..]).all(|&v| v == 0.0), "dw wrote outside its view");
}

/// The weight gradient is one GEMM when K is short, and split-K plus a channel_sum when long;
/// both paths are exercised by `conv_kernels_match_reference_and_cpu`, this pins which is which.
#[test]
fn conv_weight_gradient_splits_long_sums() {
    let gp = gpu();
    for (g, dispatches) in [(conv(3, 3, 37, 5, 7, 3, 1), 1), (conv(3, 5, 6, 30, 30, 3, 1), 2)] {
        let dy = gp.upload(&random_vec(numel(g.output_shape()), 1), &g.output_shape());
        let x = gp.upload(&random_vec(numel(g.input_shape()), 2), &g.input_shape());
        let dw = gp.zeros(&g.weight_shape());
        gp.launcher.flush();
        gp.conv2d_backward_weight(&g, &dy, &x, &dw);
        assert_eq!(gp.launcher.flush(), dispatches, "dispatches of the weight gradient of {g:?}");
    }
}

fn linear_reference(n: usize, i: usize, o: usize, x: &[f32], w: &[f32], b: &[f32]) -> Vec<f32> {
    let mut y = vec![0.0; n * o];
    for r in 0..n {
        for c in 0..o {
            y[r * o + c] =
                (b[c] as f64 + (0..i).map(|k| x[r * i + k] as f64 * w[c * i + k] as f64).sum::<f64>()) as f32;
        }
    }
    y
}

/// Linear forward and backwards on one backend: [y, dx, dw].
fn linear_ops<B: Backend>(
    be: &B,
    (n, i, o): (usize, usize, usize),
    x: &[f32],
    w: &[f32],
    b: &[f32],
    dy: &[f32],
) -> [Vec<f32>; 3] {
    let (tx, tw, tb, tdy) = (be.upload(x, &[n, i]), be.upload(w, &[o, i]), be.upload(b, &[o]), be.upload(dy, &[n, o]));
    let (y, dx, dw) = (be.zeros(&[n, o]), be.zeros(&[n, i]), be.zeros(&[o, i]));
    be.linear(&tx, &tw, &tb, &y);
    be.linear_backward_input(&tdy, &tw, &dx);
    be.linear_backward_weight(&tdy, &tx, &dw);
    [read(be, &y), read(be, &dx), read(be, &dw)]
}

#[test]
fn linear_kernels_match_reference_and_cpu() {
    let (gp, cp) = (gpu(), cpu());
    for (seed, &(n, i, o)) in [(1, 1, 1), (3, 5, 7), (37, 70, 65), (128, 64, 33), (2, 129, 3)].iter().enumerate() {
        let seed = 10 * seed as u64;
        let (x, w, b, dy) = (
            random_vec(n * i, seed),
            random_vec(o * i, seed + 1),
            random_vec(o, seed + 2),
            random_vec(n * o, seed + 3),
        );
        // The backwards are linear layers too: dx = dy w is a linear map of dy rows by w^T
        // ([i, o] as an [o -> i] layer), dw = dy^T x one of the columns of dy by x^T.
        let transpose = |m: &[f32], rows: usize, cols: usize| -> Vec<f32> {
            (0..rows * cols).map(|e| m[(e % rows) * cols + e / rows]).collect()
        };
        let expected = [
            linear_reference(n, i, o, &x, &w, &b),
            linear_reference(n, o, i, &dy, &transpose(&w, o, i), &vec![0.0; i]),
            linear_reference(o, n, i, &transpose(&dy, n, o), &transpose(&x, n, i), &vec![0.0; i]),
        ];
        let cpu_values = linear_ops(&cp, (n, i, o), &x, &w, &b, &dy);
        let gpu_values = linear_ops(&gp, (n, i, o), &x, &w, &b, &dy);
        for (k, (op, terms)) in
            [("linear", i), ("linear_backward_input", o), ("linear_backward_weight", n)].iter().enumerate()
        {
            assert_close(&format!("cpu {op} {n}x{i}x{o}"), &cpu_values[k], &expected[k], RTOL, atol(*terms));
            assert_close(&format!("gpu {op} {n}x{i}x{o}"), &gpu_values[k], &cpu_values[k], RTOL, atol(*terms));
        }
    }
}

#[test]
fn channel_sum_matches_reference_and_cpu() {
    let (gp, cp) = (gpu(), cpu());
    // Both kernel paths (runs of at most 64 values get one invocation each, longer ones a
    // workgroup), S = 1, and a long run where f32 rounding would show.
    let shapes = [(3, 5, 7), (4, 6, 1), (70, 3, 1), (64, 300, 1), (2, 3, 300), (5, 7, 64), (32, 8, 784)];
    for (seed, &(n, c, s)) in shapes.iter().enumerate() {
        let x = random_vec(n * c * s, seed as u64);
        for per_sample in [false, true] {
            let outputs = if per_sample { n * c } else { c };
            let run = if per_sample { s } else { n * s };
            let expected: Vec<f32> = (0..outputs)
                .map(|o| {
                    let (samples, ch) = if per_sample { (o / c..o / c + 1, o % c) } else { (0..n, o) };
                    samples.flat_map(|b| (0..s).map(move |j| (b * c + ch) * s + j)).map(|e| x[e] as f64).sum::<f64>()
                        as f32
                })
                .collect();
            let (gx, gout) = (gp.upload(&x, &[n, c, s]), gp.zeros(&[outputs]));
            gp.channel_sum(&gx, &gout, per_sample);
            let (cx, cout) = (cp.upload(&x, &[n, c, s]), cp.zeros(&[outputs]));
            cp.channel_sum(&cx, &cout, per_sample);
            let what = format!("channel_sum {n}x{c}x{s} per_sample {per_sample}");
            // The CPU sums in f64: only the final rounding remains.
            assert_close(&format!("cpu {what}"), &read(&cp, &cout), &expected, 1e-6, 1e-6);
            assert_close(&format!("gpu {what}"), &read(&gp, &gout), &expected, RTOL, atol(run) / 10.0);
        }
    }
}

// ---- gradients against finite differences, on both backends ---------------------------------

/// Step of the finite differences: every function here is linear in the probed input, so the
/// central difference has no truncation error and a large step only shrinks the rounding.
const H: f32 = 0.1;
const GRAD_TOL: f32 = 1e-3;
const PROBES: usize = 12;

fn conv_gradients<B: Backend>(be: &B, g: &Conv2d, seed: u64) {
    let x = random_vec(numel(g.input_shape()), seed);
    let w = random_vec(numel(g.weight_shape()), seed + 1);
    let b = random_vec(g.out_channels, seed + 2);
    let r = random_vec(numel(g.output_shape()), seed + 3);
    let (tx, tw, tr) =
        (be.upload(&x, &g.input_shape()), be.upload(&w, &g.weight_shape()), be.upload(&r, &g.output_shape()));
    let (dx, dw, db) = (be.zeros(&g.input_shape()), be.zeros(&g.weight_shape()), be.zeros(&[g.out_channels]));
    be.conv2d_backward_input(g, &tr, &tw, &dx);
    be.conv2d_backward_weight(g, &tr, &tx, &dw);
    // The bias gradient is the cotangent summed over samples and pixels.
    be.channel_sum(&tr, &db, false);
    let (dx, dw, db) = (read(be, &dx), read(be, &dw), read(be, &db));

    let forward = |x: &[f32], w: &[f32], b: &[f32]| -> Vec<f32> {
        let y: BTensor<B> = be.zeros(&g.output_shape());
        be.conv2d(g, &be.upload(x, &g.input_shape()), &be.upload(w, &g.weight_shape()), &be.upload(b, &[b.len()]), &y);
        read(be, &y)
    };
    let name = format!("{} {g:?}", be.name());
    check_gradient(&format!("conv dx {name}"), &mut |v| forward(v, &w, &b), &x, &r, &dx, H, GRAD_TOL, PROBES);
    check_gradient(&format!("conv dw {name}"), &mut |v| forward(&x, v, &b), &w, &r, &dw, H, GRAD_TOL, PROBES);
    check_gradient(&format!("conv db {name}"), &mut |v| forward(&x, &w, v), &b, &r, &db, H, GRAD_TOL, PROBES);
}

fn conv_gradients_all<B: Backend>(be: &B) {
    let shapes = [
        conv(2, 3, 5, 5, 7, 3, 1),
        conv(2, 3, 5, 7, 6, 3, 2),
        conv(3, 4, 6, 5, 5, 1, 1),
        conv(2, 5, 3, 7, 5, 1, 2),
        // Long enough along the batch and pixels for a split-K weight gradient on the GPU.
        conv(2, 2, 3, 24, 24, 3, 1),
    ];
    for (i, g) in shapes.iter().enumerate() {
        conv_gradients(be, g, 100 + 10 * i as u64);
    }
}

#[test]
fn conv_gradients_cpu() {
    conv_gradients_all(&cpu());
}

#[test]
fn conv_gradients_gpu() {
    conv_gradients_all(&gpu());
}

fn linear_gradients<B: Backend>(be: &B, (n, i, o): (usize, usize, usize), seed: u64) {
    let (x, w, b, r) =
        (random_vec(n * i, seed), random_vec(o * i, seed + 1), random_vec(o, seed + 2), random_vec(n * o, seed + 3));
    let (tx, tw, tr) = (be.upload(&x, &[n, i]), be.upload(&w, &[o, i]), be.upload(&r, &[n, o]));
    let (dx, dw, db) = (be.zeros(&[n, i]), be.zeros(&[o, i]), be.zeros(&[o]));
    be.linear_backward_input(&tr, &tw, &dx);
    be.linear_backward_weight(&tr, &tx, &dw);
    // The bias gradient: dy [n, o] seen as [n, o, 1], summed over samples.
    be.channel_sum(&tr.reshape(&[n, o, 1]), &db, false);
    let (dx, dw, db) = (read(be, &dx), read(be, &dw), read(be, &db));

    let forward = |x: &[f32], w: &[f32], b: &[f32]| -> Vec<f32> {
        let y: BTensor<B> = be.zeros(&[n, o]);
        be.linear(&be.upload(x, &[n, i]), &be.upload(w, &[o, i]), &be.upload(b, &[o]), &y);
        read(be, &y)
    };
    let name = format!("{} {n}x{i}x{o}", be.name());
    check_gradient(&format!("linear dx {name}"), &mut |v| forward(v, &w, &b), &x, &r, &dx, H, GRAD_TOL, PROBES);
    check_gradient(&format!("linear dw {name}"), &mut |v| forward(&x, v, &b), &w, &r, &dw, H, GRAD_TOL, PROBES);
    check_gradient(&format!("linear db {name}"), &mut |v| forward(&x, &w, v), &b, &r, &db, H, GRAD_TOL, PROBES);
}

fn linear_gradients_all<B: Backend>(be: &B) {
    for (k, dims) in [(3, 5, 7), (5, 33, 70)].into_iter().enumerate() {
        linear_gradients(be, dims, 200 + 10 * k as u64);
    }
}

#[test]
fn linear_gradients_cpu() {
    linear_gradients_all(&cpu());
}

#[test]
fn linear_gradients_gpu() {
    linear_gradients_all(&gpu());
}
