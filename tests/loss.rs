//! Losses and reductions against their CPU twins, and the loss gradient against central finite
//! differences of the mean loss (on both backends).

mod common;

use common::*;
use consistency::backend::prelude::*;
use consistency::backend::Metric;

/// Pred and target with every |pred - target| in [0.1, 1): the finite differences (step up to
/// 1e-2) never straddle the kink of L1 at 0.
fn inputs(n: usize, d: usize, seed: u64) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let pred = random_vec(n * d, seed);
    let target =
        random_vec(n * d, seed + 1).iter().zip(&pred).map(|(&u, &p)| p + u.signum() * (0.1 + 0.9 * u.abs())).collect();
    // Non-uniform weights in [0.25, 2.25).
    let weight = random_vec(n, seed + 2).iter().map(|&u| 1.25 + u).collect();
    (pred, target, weight)
}

fn metrics(d: usize) -> [Metric; 3] {
    [Metric::L2, Metric::L1, Metric::PseudoHuber { c: 0.00054 * (d as f32).sqrt() }]
}

/// (loss, stats, dpred) on any backend.
fn run<B: Backend>(
    be: &B,
    metric: Metric,
    n: usize,
    d: usize,
    pred: &[f32],
    target: &[f32],
    weight: &[f32],
) -> [Vec<f32>; 3] {
    let (p, t, w) = (be.upload(pred, &[n, d]), be.upload(target, &[n, d]), be.upload(weight, &[n]));
    let (loss, stats, dpred) = (be.zeros(&[n]), be.zeros(&[n]), be.zeros(&[n, d]));
    be.loss(metric, &p, &t, &w, &loss, &stats);
    be.loss_backward(metric, &p, &t, &w, &stats, &dpred);
    [read(be, &loss), read(be, &stats), read(be, &dpred)]
}

#[test]
fn loss_and_gradient_match_cpu() {
    let (g, c) = (gpu(), cpu());
    for (n, d) in [(3, 35), (5, 784), (1, 1), (2, 300)] {
        let (pred, target, weight) = inputs(n, d, 10 + d as u64);
        for metric in metrics(d) {
            let [gl, gs, gd] = run(&g, metric, n, d, &pred, &target, &weight);
            let [cl, cs, cd] = run(&c, metric, n, d, &pred, &target, &weight);
            let what = format!("{metric:?} n={n} d={d}");
            assert_close(&format!("loss {what}"), &gl, &cl, 1e-5, 0.0);
            assert_close(&format!("stats {what}"), &gs, &cs, 1e-5, 0.0);
            assert_close(&format!("dpred {what}"), &gd, &cd, 1e-5, 1e-9);
        }
    }
}

#[test]
fn loss_forward_closed_form() {
    // One sample of D = 4 with r = (1, -2, 0, 2): ||r||^2 = 9, sum |r| = 5.
    let c = cpu();
    let g = gpu();
    let pred = [1.0f32, -2.0, 0.5, 2.0];
    let target = [0.0f32, 0.0, 0.5, 0.0];
    for (metric, expected) in [(Metric::L2, 9.0 / 4.0), (Metric::L1, 5.0 / 4.0), (Metric::PseudoHuber { c: 4.0 }, 1.0)]
    {
        for [loss, stats, _] in
            [run(&c, metric, 1, 4, &pred, &target, &[3.0]), run(&g, metric, 1, 4, &pred, &target, &[3.0])]
        {
            assert_close(&format!("{metric:?}"), &loss, &[3.0 * expected], 1e-6, 0.0);
            assert_eq!(stats, [9.0]);
        }
    }
}

/// The mean over samples of the loss, through `sum`, as a function of pred.
fn mean_loss<B: Backend>(
    be: &B,
    metric: Metric,
    n: usize,
    d: usize,
    pred: &[f32],
    target: &[f32],
    weight: &[f32],
) -> f32 {
    let (p, t, w) = (be.upload(pred, &[n, d]), be.upload(target, &[n, d]), be.upload(weight, &[n]));
    let (loss, stats, mean) = (be.zeros(&[n]), be.zeros(&[n]), be.zeros(&[1]));
    be.loss(metric, &p, &t, &w, &loss, &stats);
    be.sum(&loss, &mean, false, 1.0 / n as f32);
    read(be, &mean)[0]
}

/// Finite-difference step. Large on purpose: the central difference is exact for L2 (quadratic)
/// and for L1 (linear between kinks, and every |pred - target| >= 0.1 > H), and for the smooth
/// pseudo-Huber its truncation error is about H^2 / (2 ||r||^2) relative, under 1e-4 here; a
/// small step would instead drown the difference in the f32 rounding of the forward pass.
const H: f32 = 0.05;

fn gradient_check<B: Backend>(be: &B) {
    // The tolerance grows with D: the forward value is an f32 of size ~ w ||r|| (pseudo-Huber)
    // or w ||r||^2 / D, so its rounding, divided by 2H, is a relative error of about
    // 2^-24 N ||r||^2 / (H |r_i|) in the difference quotient (measured on lavapipe and the CPU:
    // at most 2.5e-4 at D = 35 and 7.3e-3 at D = 784).
    // Wrong gradients are off by factors (2, 1/N, 1/D, a sign), far beyond either tolerance,
    // and the CPU comparison above checks D = 784 to 1e-5.
    for (n, d, tol) in [(3, 35, 2e-3), (5, 784, 2e-2)] {
        let (pred, target, weight) = inputs(n, d, 20 + d as u64);
        for metric in metrics(d) {
            let [_, _, dpred] = run(be, metric, n, d, &pred, &target, &weight);
            // A cotangent of n * d brings the gradient to order 1 and above, where
            // check_gradient's tolerance is relative.
            let r = (n * d) as f32;
            let grad: Vec<f32> = dpred.iter().map(|g| g * r).collect();
            check_gradient(
                &format!("{} {metric:?} n={n} d={d}", be.name()),
                &mut |x| vec![mean_loss(be, metric, n, d, x, &target, &weight)],
                &pred,
                &[r],
                &grad,
                H,
                tol,
                40,
            );
        }
    }
}

#[test]
fn loss_gradient_matches_finite_differences_on_gpu() {
    gradient_check(&gpu());
}

#[test]
fn loss_gradient_matches_finite_differences_on_cpu() {
    gradient_check(&cpu());
}

#[test]
fn l1_gradient_is_zero_where_pred_equals_target() {
    for [_, _, dpred] in [
        run(&gpu(), Metric::L1, 1, 3, &[1.0, 2.0, 3.0], &[1.0, 0.0, 5.0], &[1.0]),
        run(&cpu(), Metric::L1, 1, 3, &[1.0, 2.0, 3.0], &[1.0, 0.0, 5.0], &[1.0]),
    ] {
        assert_eq!(dpred, [0.0, 1.0 / 3.0, -1.0 / 3.0]);
    }
}

/// `scale * sum x` (or of x^2) in f64.
fn exact_sum(x: &[f32], square: bool, scale: f32) -> f64 {
    scale as f64 * x.iter().map(|&v| if square { v as f64 * v as f64 } else { v as f64 }).sum::<f64>()
}

#[test]
fn sum_matches_f64() {
    let (g, c) = (gpu(), cpu());
    for len in [1usize, 255, 256, 257, 1000, 65_537, 1_000_003] {
        // An offset keeps the plain sum away from zero, so its relative error means something.
        let x: Vec<f32> = random_vec(len, len as u64).iter().map(|v| v + 0.25).collect();
        let (gx, cx) = (g.upload(&x, &[len]), c.upload(&x, &[len]));
        let (go, co) = (g.zeros(&[1]), c.zeros(&[1]));
        for square in [false, true] {
            let scale = 0.75;
            g.sum(&gx, &go, square, scale);
            c.sum(&cx, &co, square, scale);
            let (gv, cv) = (read(&g, &go)[0], read(&c, &co)[0]);
            let exact = exact_sum(&x, square, scale);
            // Worst case of f32 summation: each addend passes through at most (values per
            // thread + 8 tree levels + 8 more in the second pass) roundings of relative 2^-24,
            // so the bound is on the sum of |terms|, not on the total. (On lavapipe the error is
            // about one rounding of the total: 8e-3 of 1.9e5 at a million values.)
            let abs_sum = exact_sum(&x.iter().map(|v| v.abs()).collect::<Vec<_>>(), square, scale);
            let per_thread = len.div_ceil(256 * 256) as f64;
            let bound = (per_thread + 18.0) * f32::EPSILON as f64 / 2.0 * abs_sum;
            assert!(
                (gv as f64 - exact).abs() <= bound,
                "sum len {len} square {square}: {gv} vs {exact} (bound {bound})"
            );
            assert!((cv as f64 - exact).abs() <= exact.abs() * 1e-7, "cpu sum len {len}: {cv} vs {exact}");
        }
    }
}

#[test]
fn sum_counts_every_element_once() {
    // Small integers add up exactly in f32 (every partial sum stays below 2^24), so the GPU
    // must return the exact total: a skipped or doubled element, at a chunk or workgroup edge
    // or at the end, changes it.
    let g = gpu();
    for len in [1usize, 255, 256, 257, 65_535, 65_536, 65_537, 1_000_003] {
        let x: Vec<f32> = (0..len).map(|i| (i % 5) as f32).collect();
        let gx = g.upload(&x, &[len]);
        let out = g.zeros(&[1]);
        for square in [false, true] {
            g.sum(&gx, &out, square, 1.0);
            let exact: f32 = (0..len).map(|i| if square { (i % 5) * (i % 5) } else { i % 5 }).sum::<usize>() as f32;
            assert_eq!(read(&g, &out)[0], exact, "sum of {len} small integers (square {square})");
        }
    }
}

#[test]
fn sum_of_a_view_writes_one_value() {
    // A view that starts inside a buffer (the loss tensor of a larger batch), and an output
    // slot in the middle of a bigger tensor: nothing around it may change.
    let g = gpu();
    let x = random_vec(600, 3);
    let all = g.upload(&x, &[600]);
    let view = all.view(256, &[300]);
    let out = g.upload(&[5.0; 64 + 3], &[67]);
    g.sum(&view, &out.view(64, &[1]), false, 1.0);
    let v = read(&g, &out);
    assert!(v[..64].iter().chain(&v[65..]).all(|&y| y == 5.0), "sum wrote outside its output");
    let exact = exact_sum(&x[256..556], false, 1.0);
    assert!((v[64] as f64 - exact).abs() < 1e-5, "{} vs {exact}", v[64]);
}

/// (per-sample loss, gradient of the mean loss) of the softmax cross entropy on any backend.
fn cross_entropy<B: Backend>(be: &B, n: usize, k: usize, logits: &[f32], labels: &[f32]) -> (Vec<f32>, Vec<f32>) {
    let (z, l) = (be.upload(logits, &[n, k]), be.upload(labels, &[n]));
    let (loss, dz) = (be.zeros(&[n]), be.zeros(&[n, k]));
    be.softmax_cross_entropy(&z, &l, &loss);
    be.softmax_cross_entropy_backward(&z, &l, &dz);
    (read(be, &loss), read(be, &dz))
}

/// Logits spread over [-4, 4) and a label per sample (cycling through the classes).
fn cross_entropy_inputs(n: usize, k: usize, seed: u64) -> (Vec<f32>, Vec<f32>) {
    let logits = random_vec(n * k, seed).iter().map(|v| 4.0 * v).collect();
    let labels = (0..n).map(|s| ((s * 7 + 3) % k) as f32).collect();
    (logits, labels)
}

/// `-log softmax(z)[c]` in f64, written independently of the backends (log-sum-exp).
fn cross_entropy_f64(z: &[f32], c: usize) -> f64 {
    let m = z.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(v as f64));
    m + z.iter().map(|&v| (v as f64 - m).exp()).sum::<f64>().ln() - z[c] as f64
}

#[test]
fn softmax_cross_entropy_matches_cpu_and_f64() {
    let (g, c) = (gpu(), cpu());
    // Shapes past a workgroup (300 samples), one class, and the classifier's ten.
    for (n, k) in [(3, 10), (5, 37), (300, 10), (2, 1), (1, 2)] {
        let (logits, labels) = cross_entropy_inputs(n, k, 40 + (n * k) as u64);
        let (gl, gd) = cross_entropy(&g, n, k, &logits, &labels);
        let (cl, cd) = cross_entropy(&c, n, k, &logits, &labels);
        let exact: Vec<f32> =
            (0..n).map(|s| cross_entropy_f64(&logits[s * k..(s + 1) * k], labels[s] as usize) as f32).collect();
        // The CPU works in f64: one rounding of the result. The GPU sums K exps in f32 and
        // takes a log: a few ulps of the terms, which for losses near 0 (k = 1) are absolute.
        assert_close(&format!("cpu loss n={n} k={k}"), &cl, &exact, 1e-6, 1e-7);
        assert_close(&format!("gpu loss n={n} k={k}"), &gl, &cl, 1e-5, 1e-6);
        assert_close(&format!("gpu grad n={n} k={k}"), &gd, &cd, 1e-5, 1e-8);
        // Each gradient row sums to zero: softmax sums to one, the one-hot to one.
        for s in 0..n {
            let row: f64 = cd[s * k..(s + 1) * k].iter().map(|&v| v as f64).sum();
            assert!(row.abs() < 1e-7, "cpu gradient row {s} sums to {row}");
        }
    }
}

#[test]
fn softmax_cross_entropy_closed_form() {
    // Logits (0, ln 3) for label 0: softmax = (1/4, 3/4), loss = ln 4; over N = 2 samples the
    // gradient of the mean is (1/4 - 1, 3/4) / 2. The second sample is the same with label 1:
    // loss ln(4/3), gradient (1/4, 3/4 - 1) / 2.
    let logits = [0.0, 3f32.ln(), 0.0, 3f32.ln()];
    for (loss, grad) in
        [cross_entropy(&cpu(), 2, 2, &logits, &[0.0, 1.0]), cross_entropy(&gpu(), 2, 2, &logits, &[0.0, 1.0])]
    {
        assert_close("loss", &loss, &[4f32.ln(), (4.0f32 / 3.0).ln()], 1e-6, 1e-7);
        assert_close("grad", &grad, &[-0.375, 0.375, 0.125, -0.125], 1e-6, 1e-7);
    }
}

/// The mean cross entropy through `sum`, as a function of the logits.
fn mean_cross_entropy<B: Backend>(be: &B, n: usize, k: usize, logits: &[f32], labels: &[f32]) -> f32 {
    let (z, l) = (be.upload(logits, &[n, k]), be.upload(labels, &[n]));
    let (loss, mean) = (be.zeros(&[n]), be.zeros(&[1]));
    be.softmax_cross_entropy(&z, &l, &loss);
    be.sum(&loss, &mean, false, 1.0 / n as f32);
    read(be, &mean)[0]
}

fn cross_entropy_gradient_check<B: Backend>(be: &B) {
    // The cross entropy is smooth with second derivatives below 1/4 per logit, so a step of
    // 1e-2 has a truncation error near 1e-5 relative; the f32 rounding of a mean loss of ~2,
    // divided by 2h, is ~1e-5 absolute after the cotangent below brings gradients to order 1.
    for (n, k) in [(3, 10), (4, 37)] {
        let (logits, labels) = cross_entropy_inputs(n, k, 60 + k as u64);
        let (_, dz) = cross_entropy(be, n, k, &logits, &labels);
        let r = n as f32;
        let grad: Vec<f32> = dz.iter().map(|g| g * r).collect();
        check_gradient(
            &format!("{} cross entropy n={n} k={k}", be.name()),
            &mut |x| vec![mean_cross_entropy(be, n, k, x, &labels)],
            &logits,
            &[r],
            &grad,
            1e-2,
            2e-3,
            n * k,
        );
    }
}

#[test]
fn softmax_cross_entropy_gradient_matches_finite_differences_on_gpu() {
    cross_entropy_gradient_check(&gpu());
}

#[test]
fn softmax_cross_entropy_gradient_matches_finite_differences_on_cpu() {
    cross_entropy_gradient_check(&cpu());
}

#[test]
fn softmax_cross_entropy_stays_finite_for_huge_logits() {
    // exp(1e4) or exp(3e38) overflows f32 (and f64): a naive softmax gives inf / inf = NaN. With
    // the row maximum subtracted, the loss is the exact gap to the maximum (plus ln 1 or ln 2)
    // and the gradient a clean 0 / +-1 / 0.5 pattern.
    let logits = [1e4, -1e4, 0.0, 3e38, 3e38, -3e38, 1e4, 1e4 - 8.0, 1e4];
    let labels = [1.0, 0.0, 2.0];
    for (be, (loss, grad)) in
        [("cpu", cross_entropy(&cpu(), 3, 3, &logits, &labels)), ("gpu", cross_entropy(&gpu(), 3, 3, &logits, &labels))]
    {
        assert!(loss.iter().chain(&grad).all(|v| v.is_finite()), "{be}: {loss:?} {grad:?}");
        // Sample 0: the label's logit is 2e4 below the maximum, the others vanish: loss 2e4.
        // Sample 1: two equal maxima, the third vanishes (even -6e38 overflowing to -inf in
        // f32 is harmless): ln 2. Sample 2: two maxima and one 8 below: ln(2 + e^-8).
        let e8 = (-8.0f64).exp();
        let expected = [2e4, 2f64.ln() as f32, (2.0 + e8).ln() as f32];
        assert_close(&format!("{be} loss"), &loss, &expected, 1e-6, 1e-6);
        let third = 1.0 / 3.0;
        let (p_top, p_low) = ((1.0 / (2.0 + e8)) as f32, (e8 / (2.0 + e8)) as f32);
        let expected = [
            third,
            -third,
            0.0,
            (0.5 - 1.0) * third,
            0.5 * third,
            0.0,
            p_top * third,
            p_low * third,
            (p_top - 1.0) * third,
        ];
        assert_close(&format!("{be} grad"), &grad, &expected, 1e-5, 1e-7);
    }
}

#[test]
fn softmax_cross_entropy_rounds_labels_and_flags_invalid_ones() {
    // Labels that went through float arithmetic (127.5 v + 127.5 of a gathered byte) name the
    // nearest class; labels outside 0..K or NaN give NaN loss and gradient for their sample only.
    let logits = random_vec(5 * 4, 77);
    let labels = [2.0000002, 0.9999999, 4.0, -1.0, f32::NAN];
    for (be, (loss, grad)) in
        [("cpu", cross_entropy(&cpu(), 5, 4, &logits, &labels)), ("gpu", cross_entropy(&gpu(), 5, 4, &logits, &labels))]
    {
        let (exact, _) = cross_entropy(&cpu(), 2, 4, &logits[..8], &[2.0, 1.0]);
        assert_close(&format!("{be} rounded labels"), &loss[..2], &exact, 1e-5, 1e-6);
        assert!(grad[..8].iter().all(|v| v.is_finite()), "{be}: valid rows must stay finite");
        assert!(loss[2..].iter().all(|v| v.is_nan()), "{be}: invalid labels must give NaN, got {:?}", &loss[2..]);
        assert!(grad[8..].iter().all(|v| v.is_nan()), "{be}: invalid labels must give NaN gradients");
    }
}
