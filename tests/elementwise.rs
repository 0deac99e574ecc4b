//! Elementwise and data-movement kernels against their CPU twins (and finite differences for
//! the backward kernels).

mod common;

use common::*;
use consistency::backend::prelude::*;

#[test]
fn add_matches_cpu() {
    let (g, c) = (gpu(), cpu());
    for &len in &[1usize, 7, 256, 1000, 70_001] {
        let a = random_vec(len, 1);
        let b = random_vec(len, 2);
        let (ga, gb, go) = (g.upload(&a, &[len]), g.upload(&b, &[len]), g.zeros(&[len]));
        g.add(&ga, &gb, &go);
        let (ca, cb, co) = (c.upload(&a, &[len]), c.upload(&b, &[len]), c.zeros(&[len]));
        c.add(&ca, &cb, &co);
        assert_close("add", &read(&g, &go), &read(&c, &co), 0.0, 0.0);
    }
}

/// Inputs spanning SiLU's curved middle and both tails, plus extremes where a naive sigmoid
/// would evaluate exp(-x) = inf.
fn silu_inputs(len: usize, seed: u64) -> Vec<f32> {
    let extremes = [-1e4f32, -100.0, -30.0, 0.0, 30.0, 100.0, 1e4];
    random_vec(len, seed).iter().enumerate().map(|(i, v)| if i % 97 == 3 { extremes[i % 7] } else { 8.0 * v }).collect()
}

#[test]
fn silu_matches_cpu() {
    let (g, c) = (gpu(), cpu());
    for &len in &[1usize, 7, 1000, 70_001] {
        let x = silu_inputs(len, 3);
        let dy = random_vec(len, 4);
        let (gx, gdy, gy, gdx) = (g.upload(&x, &[len]), g.upload(&dy, &[len]), g.zeros(&[len]), g.zeros(&[len]));
        g.silu(&gx, &gy);
        g.silu_backward(&gx, &gdy, &gdx);
        let (cx, cdy, cy, cdx) = (c.upload(&x, &[len]), c.upload(&dy, &[len]), c.zeros(&[len]), c.zeros(&[len]));
        c.silu(&cx, &cy);
        c.silu_backward(&cx, &cdy, &cdx);
        // GPU exp is allowed a few ulp more error than the CPU's; a few 1e-7 relative.
        assert_close("silu", &read(&g, &gy), &read(&c, &cy), 1e-4, 1e-5);
        assert_close("silu_backward", &read(&g, &gdx), &read(&c, &cdx), 1e-4, 1e-5);
    }
}

#[test]
fn silu_tails() {
    // silu(x) -> x for large x and -> 0 for very negative x; the slope -> 1 and 0. Both
    // backends, so the stable sigmoid is checked where it matters (finite everywhere).
    fn check<B: Backend>(be: &B) {
        let x = [-1e4f32, -100.0, 100.0, 1e4];
        let (tx, y, dx) = (be.upload(&x, &[4]), be.zeros(&[4]), be.zeros(&[4]));
        be.silu(&tx, &y);
        be.silu_backward(&tx, &be.upload(&[1.0; 4], &[4]), &dx);
        assert_close("silu tails", &read(be, &y), &[0.0, 0.0, 100.0, 1e4], 1e-6, 1e-30);
        assert_close("silu' tails", &read(be, &dx), &[0.0, 0.0, 1.0, 1.0], 1e-6, 1e-30);
    }
    check(&cpu());
    check(&gpu());
}

fn silu_gradient<B: Backend>(be: &B) {
    let len = 200;
    let x: Vec<f32> = random_vec(len, 5).iter().map(|v| 6.0 * v).collect();
    let r = random_vec(len, 6);
    let (tx, tr, dx) = (be.upload(&x, &[len]), be.upload(&r, &[len]), be.zeros(&[len]));
    be.silu_backward(&tx, &tr, &dx);
    let dx = read(be, &dx);
    let mut f = |v: &[f32]| {
        let y = be.zeros(&[len]);
        be.silu(&be.upload(v, &[len]), &y);
        read(be, &y)
    };
    // Elementwise: a probe changes one output of size <= 6 (f32 ulp ~5e-7), so with h = 1e-2
    // the quotient's rounding noise is ~3e-5 and the O(h^2) truncation ~1e-5.
    check_gradient("silu", &mut f, &x, &r, &dx, 1e-2, 1e-3, len);
}

#[test]
fn silu_gradient_cpu() {
    silu_gradient(&cpu());
}

#[test]
fn silu_gradient_gpu() {
    silu_gradient(&gpu());
}

#[test]
fn upsample2x_small_example() {
    let c = cpu();
    let (x, y) = (c.upload(&[1.0, 2.0, 3.0, 4.0], &[1, 1, 2, 2]), c.zeros(&[1, 1, 4, 4]));
    c.upsample2x(&x, &y);
    #[rustfmt::skip]
    let expected = [
        1.0, 1.0, 2.0, 2.0,
        1.0, 1.0, 2.0, 2.0,
        3.0, 3.0, 4.0, 4.0,
        3.0, 3.0, 4.0, 4.0,
    ];
    assert_close("upsample2x", &read(&c, &y), &expected, 0.0, 0.0);
    let dx = c.zeros(&[1, 1, 2, 2]);
    c.upsample2x_backward(&c.upload(&(0..16).map(|v| v as f32).collect::<Vec<_>>(), &[1, 1, 4, 4]), &dx);
    // Each 2x2 block of 0..16 laid out 4 wide: 0+1+4+5, 2+3+6+7, 8+9+12+13, 10+11+14+15.
    assert_close("upsample2x_backward", &read(&c, &dx), &[10.0, 18.0, 42.0, 50.0], 0.0, 0.0);
}

#[test]
fn upsample2x_matches_cpu() {
    let (g, c) = (gpu(), cpu());
    for (k, &[n, ch, h, w]) in [[3usize, 5, 5, 7], [1, 1, 1, 1], [2, 16, 7, 7], [2, 3, 14, 14]].iter().enumerate() {
        let (small, big) = ([n, ch, h, w], [n, ch, 2 * h, 2 * w]);
        let x = random_vec(n * ch * h * w, 7 + k as u64);
        let dy = random_vec(4 * x.len(), 8 + k as u64);
        let (gy, gdx) = (g.zeros(&big), g.zeros(&small));
        g.upsample2x(&g.upload(&x, &small), &gy);
        g.upsample2x_backward(&g.upload(&dy, &big), &gdx);
        let (cy, cdx) = (c.zeros(&big), c.zeros(&small));
        c.upsample2x(&c.upload(&x, &small), &cy);
        c.upsample2x_backward(&c.upload(&dy, &big), &cdx);
        // A copy, and a sum of four in the same order on both: identical results.
        assert_close("upsample2x", &read(&g, &gy), &read(&c, &cy), 0.0, 0.0);
        assert_close("upsample2x_backward", &read(&g, &gdx), &read(&c, &cdx), 0.0, 0.0);
    }
}

fn upsample2x_gradient<B: Backend>(be: &B) {
    let (small, big) = ([2, 3, 5, 7], [2, 3, 10, 14]);
    let x = random_vec(2 * 3 * 5 * 7, 9);
    let r = random_vec(4 * x.len(), 10);
    let dx = be.zeros(&small);
    be.upsample2x_backward(&be.upload(&r, &big), &dx);
    let dx = read(be, &dx);
    let mut f = |v: &[f32]| {
        let y = be.zeros(&big);
        be.upsample2x(&be.upload(v, &small), &y);
        read(be, &y)
    };
    // Linear, so the quotient is exact up to the rounding of x +- h (~1e-7 / h).
    check_gradient("upsample2x", &mut f, &x, &r, &dx, 0.1, 1e-4, x.len());
}

#[test]
fn upsample2x_gradient_cpu() {
    upsample2x_gradient(&cpu());
}

#[test]
fn upsample2x_gradient_gpu() {
    upsample2x_gradient(&gpu());
}

/// Concatenates a `[N, 5, S]` and b `[N, 3, S]` along channels with two copies, splits the
/// result back with two more, and checks accumulate mode adds into what is there.
fn concat_and_split<B: Backend>(be: &B) {
    let (n, ca, cb, s) = (3, 5, 3, 35);
    let (a, b) = (random_vec(n * ca * s, 11), random_vec(n * cb * s, 12));
    let (ta, tb) = (be.upload(&a, &[n, ca, 5, 7]), be.upload(&b, &[n, cb, 5, 7]));
    let cat = be.zeros(&[n, ca + cb, 5, 7]);
    be.copy_channels(&ta, 0, &cat, 0, ca, false);
    be.copy_channels(&tb, 0, &cat, ca, cb, false);
    let mut expected = Vec::new();
    for i in 0..n {
        expected.extend_from_slice(&a[i * ca * s..(i + 1) * ca * s]);
        expected.extend_from_slice(&b[i * cb * s..(i + 1) * cb * s]);
    }
    let cat_values = read(be, &cat);
    assert_close("concat", &cat_values, &expected, 0.0, 0.0);

    // Backward of the concat: the channel ranges back out, added onto existing gradients.
    let (ga0, gb0) = (random_vec(a.len(), 13), random_vec(b.len(), 14));
    let (ga, gb) = (be.upload(&ga0, &[n, ca, 5, 7]), be.upload(&gb0, &[n, cb, 5, 7]));
    be.copy_channels(&cat, 0, &ga, 0, ca, true);
    be.copy_channels(&cat, ca, &gb, 0, cb, true);
    let sum = |x: &[f32], y: &[f32]| x.iter().zip(y).map(|(x, y)| x + y).collect::<Vec<_>>();
    assert_close("split a (accumulate)", &read(be, &ga), &sum(&ga0, &a), 0.0, 0.0);
    assert_close("split b (accumulate)", &read(be, &gb), &sum(&gb0, &b), 0.0, 0.0);

    // A middle range into a middle range, overwriting: the other channels stay untouched.
    let dst0 = random_vec(n * 4 * s, 15);
    let dst = be.upload(&dst0, &[n, 4, s]);
    be.copy_channels(&cat.reshape(&[n, ca + cb, s]), 4, &dst, 1, 2, false);
    let mut expected = dst0.clone();
    for i in 0..n {
        for k in 0..2 * s {
            expected[(i * 4 + 1) * s + k] = cat_values[(i * (ca + cb) + 4) * s + k];
        }
    }
    assert_close("middle channels", &read(be, &dst), &expected, 0.0, 0.0);
}

#[test]
fn copy_channels_cpu() {
    concat_and_split(&cpu());
}

#[test]
fn copy_channels_gpu() {
    concat_and_split(&gpu());
}

#[test]
fn add_channel_bias_matches_cpu() {
    let (g, c) = (gpu(), cpu());
    for (k, &[n, ch, h, w]) in [[3usize, 5, 5, 7], [2, 64, 7, 7], [1, 1, 1, 1]].iter().enumerate() {
        let shape = [n, ch, h, w];
        let (x, e) = (random_vec(n * ch * h * w, 16 + k as u64), random_vec(n * ch, 17 + k as u64));
        let gy = g.zeros(&shape);
        g.add_channel_bias(&g.upload(&x, &shape), &g.upload(&e, &[n, ch]), &gy);
        let cy = c.zeros(&shape);
        c.add_channel_bias(&c.upload(&x, &shape), &c.upload(&e, &[n, ch]), &cy);
        let cy = read(&c, &cy);
        let expected: Vec<f32> = x.iter().enumerate().map(|(i, v)| v + e[i / (h * w)]).collect();
        assert_close("add_channel_bias (cpu)", &cy, &expected, 0.0, 0.0);
        // One f32 addition: exact on both.
        assert_close("add_channel_bias", &read(&g, &gy), &cy, 0.0, 0.0);
    }
}

#[test]
fn scale_add_matches_cpu() {
    let (g, c) = (gpu(), cpu());
    for (k, &(n, d)) in [(3usize, 784usize), (1, 1), (5, 77), (128, 784)].iter().enumerate() {
        let seed = 20 + 4 * k as u64;
        let (alpha, beta) = (random_vec(n, seed), random_vec(n, seed + 1));
        let (x, y) = (random_vec(n * d, seed + 2), random_vec(n * d, seed + 3));
        let go = g.zeros(&[n, d]);
        g.scale_add(
            &g.upload(&alpha, &[n]),
            &g.upload(&x, &[n, d]),
            &g.upload(&beta, &[n]),
            &g.upload(&y, &[n, d]),
            &go,
        );
        let co = c.zeros(&[n, d]);
        c.scale_add(
            &c.upload(&alpha, &[n]),
            &c.upload(&x, &[n, d]),
            &c.upload(&beta, &[n]),
            &c.upload(&y, &[n, d]),
            &co,
        );
        let co = read(&c, &co);
        let expected: Vec<f32> = (0..n * d).map(|i| alpha[i / d] * x[i] + beta[i / d] * y[i]).collect();
        assert_close("scale_add (cpu)", &co, &expected, 0.0, 0.0);
        // The GPU compiler may fuse one product into the addition (an FMA, rounding once
        // instead of twice): the difference is an ulp of the larger term, which can be large
        // relative to a result that cancels, hence the absolute part.
        assert_close("scale_add", &read(&g, &go), &co, 1e-6, 1e-7);
    }
}

#[test]
fn sinusoidal_embedding_matches_cpu() {
    let (g, c) = (gpu(), cpu());
    // c_noise = 0.25 ln t for t in [0.002, 80]: [-1.55, 1.10]; the endpoints and a spread.
    let mut cs = vec![-1.6f32, -1.5537, 0.0, 1.0955, 1.1];
    cs.extend(random_vec(59, 30).iter().map(|v| -0.25 + 1.35 * v));
    let n = cs.len();
    for half in [8usize, 32, 5] {
        let go = g.zeros(&[n, 2 * half]);
        g.sinusoidal_embedding(&g.upload(&cs, &[n]), &go);
        let co = c.zeros(&[n, 2 * half]);
        c.sinusoidal_embedding(&c.upload(&cs, &[n]), &co);
        let co = read(&c, &co);

        // The CPU twin against the formula in f64. Its argument is rounded to f32 in three
        // operations (frequency, two products): ~2e-7 relative, so up to ~4e-4 rad at 1600 rad.
        let exact: Vec<f32> = (0..n * 2 * half)
            .map(|j| {
                let (row, col) = (j / (2 * half), j % (2 * half));
                let arg = 1000.0 * cs[row] as f64 * 10000f64.powf(-((col % half) as f64) / half as f64);
                (if col < half { arg.sin() } else { arg.cos() }) as f32
            })
            .collect();
        assert_close("sinusoidal_embedding (cpu vs f64)", &co, &exact, 0.0, 1e-3);

        // GPU against CPU. The kernel evaluates the same f32 operations, but WGSL lets exp be
        // off by 3 + 2|x| ulp (up to ~21 ulp at x = -ln 10000, a relative 1.3e-6 in the
        // frequency, 2e-3 rad in a 1600 rad argument) and sin/cos by 2^-11 absolute after the
        // kernel's range reduction. Lavapipe does far better, but the bound is the spec's.
        assert_close("sinusoidal_embedding", &read(&g, &go), &co, 0.0, 3e-3);
    }
}

/// Per-tile `x + (mean(y) - mean(x))` where keep > 0.5, else x, in f64: an independent
/// reference for the projection of zero-shot editing with patch > 1.
fn keep_known_reference(shape: [usize; 4], patch: usize, x: &[f32], y: &[f32], keep: &[f32]) -> Vec<f32> {
    let (h, w) = (shape[2], shape[3]);
    (0..x.len())
        .map(|i| {
            // NaN is not above one half, so it keeps x, as in the kernel.
            let known = keep[i % keep.len()] > 0.5;
            if !known {
                return x[i];
            }
            let (plane, s) = (i / (h * w) * (h * w), i % (h * w));
            let (top, left) = (s / w / patch * patch, s % w / patch * patch);
            let mut diff = 0.0f64;
            for r in top..top + patch {
                for c in left..left + patch {
                    diff += y[plane + r * w + c] as f64 - x[plane + r * w + c] as f64;
                }
            }
            (x[i] as f64 + diff / (patch * patch) as f64) as f32
        })
        .collect()
}

fn keep_known_on<B: Backend>(
    be: &B,
    patch: usize,
    shape: &[usize],
    x: &[f32],
    y: &[f32],
    keep_shape: &[usize],
    keep: &[f32],
) -> Vec<f32> {
    let out = be.zeros(shape);
    be.keep_known(patch, &be.upload(x, shape), &be.upload(y, shape), &be.upload(keep, keep_shape), &out);
    read(be, &out)
}

#[test]
fn keep_known_matches_cpu() {
    let (g, c) = (gpu(), cpu());
    // (shape, patch, one mask for all samples): inpainting, the MNIST super-resolution tiles,
    // a tile size that is not a power of two, several channels, a single pixel.
    let cases = [
        ([3usize, 1, 28, 28], 1usize, false),
        ([3, 1, 28, 28], 1, true),
        ([2, 1, 28, 28], 4, true),
        ([2, 1, 28, 28], 2, false),
        ([2, 1, 28, 28], 7, true),
        ([2, 3, 6, 10], 2, true),
        ([1, 1, 1, 1], 1, false),
    ];
    for (k, &(shape, patch, broadcast)) in cases.iter().enumerate() {
        let seed = 40 + 3 * k as u64;
        let len: usize = shape.iter().product();
        let keep_shape = if broadcast { [1, shape[1], shape[2], shape[3]] } else { shape };
        // Mostly 0 and 1, with values on and around the threshold and a NaN (never known).
        let odd = [0.5f32, 0.50001, 0.2, 2.0, f32::NAN];
        let keep: Vec<f32> = random_vec(keep_shape.iter().product(), seed)
            .iter()
            .enumerate()
            .map(|(i, v)| {
                if i % 13 == 5 {
                    odd[i % 5]
                } else if *v > 0.0 {
                    1.0
                } else {
                    0.0
                }
            })
            .collect();
        let (x, y) = (random_vec(len, seed + 1), random_vec(len, seed + 2));
        let on_gpu = keep_known_on(&g, patch, &shape, &x, &y, &keep_shape, &keep);
        let on_cpu = keep_known_on(&c, patch, &shape, &x, &y, &keep_shape, &keep);
        let what = format!("keep_known {shape:?} patch {patch}");
        if patch == 1 {
            // A choice between x and y, so exact, bit for bit, on both.
            let expected: Vec<f32> = (0..len).map(|i| if keep[i % keep.len()] > 0.5 { y[i] } else { x[i] }).collect();
            let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&on_cpu), bits(&expected), "{what} (cpu)");
            assert_eq!(bits(&on_gpu), bits(&expected), "{what}");
        } else {
            // The f32 tile sum of p^2 differences (each below 2) rounds at most p^2 times by an
            // ulp of at most 2 p^2: under 1e-5 for p <= 7 against f64.
            let exact = keep_known_reference(shape, patch, &x, &y, &keep);
            assert_close(&format!("{what} (cpu vs f64)"), &on_cpu, &exact, 0.0, 1e-5);
            // Same sums in the same order on both; 1 / p^2 is a power of two for p = 2, 4, so
            // the final x + diff / p^2 is exact even if fused. For p = 7 a fused multiply-add
            // may round once instead of twice: an ulp of a value below 4.
            let atol = if patch.is_power_of_two() { 0.0 } else { 5e-7 };
            assert_close(&what, &on_gpu, &on_cpu, 0.0, atol);
        }
    }
}
