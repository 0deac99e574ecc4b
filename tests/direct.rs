//! The CPU backend's register-blocked 3x3 convolution kernels, in each compiled copy (the
//! baseline one and, where the processor has them, AVX2 + FMA), against plain f64 loops, on
//! shapes that leave partial tiles everywhere: channel counts that are not multiples of the
//! 4-channel tile, rows whose padded length is not a multiple of the pixel tile, one-pixel and
//! one-row images.

mod common;

use common::*;
use consistency::backend::cpu::direct;
use consistency::backend::cpu::simd::Isa;

/// (batch, cin, cout, height, width)
const SHAPES: [(usize, usize, usize, usize, usize); 8] = [
    (2, 3, 5, 5, 7),
    (1, 1, 1, 1, 1),
    (3, 16, 16, 7, 7),
    (2, 6, 33, 9, 4),
    (1, 17, 2, 3, 19),
    (5, 4, 4, 1, 6),
    // More samples than the weight gradient's 16 groups.
    (19, 2, 3, 4, 4),
    (2, 32, 16, 14, 14),
];

/// Output (sample, channel, y, x) of a 3x3 'same' convolution reads input (y + ky - 1, x + kx - 1).
fn references(
    (n, cin, cout, h, w): (usize, usize, usize, usize, usize),
    x: &[f32],
    wt: &[f32],
    b: &[f32],
    dy: &[f32],
) -> [Vec<f32>; 3] {
    let mut y: Vec<f64> = (0..n * cout * h * w).map(|i| b[(i / (h * w)) % cout] as f64).collect();
    let mut dx = vec![0.0f64; n * cin * h * w];
    let mut dw = vec![0.0f64; cout * cin * 9];
    for s in 0..n {
        for co in 0..cout {
            for ci in 0..cin {
                for t in 0..9 {
                    let (ky, kx) = (t / 3, t % 3);
                    for oy in 0..h {
                        for ox in 0..w {
                            let (iy, ix) = ((oy + ky) as isize - 1, (ox + kx) as isize - 1);
                            if iy < 0 || ix < 0 || iy >= h as isize || ix >= w as isize {
                                continue;
                            }
                            let xi = ((s * cin + ci) * h + iy as usize) * w + ix as usize;
                            let yi = ((s * cout + co) * h + oy) * w + ox;
                            let wi = (co * cin + ci) * 9 + t;
                            y[yi] += x[xi] as f64 * wt[wi] as f64;
                            dx[xi] += dy[yi] as f64 * wt[wi] as f64;
                            dw[wi] += dy[yi] as f64 * x[xi] as f64;
                        }
                    }
                }
            }
        }
    }
    [y, dx, dw].map(|v| v.into_iter().map(|v| v as f32).collect())
}

#[test]
fn direct_kernels_match_f64_loops_in_every_copy() {
    for (seed, &shape) in SHAPES.iter().enumerate() {
        let (n, cin, cout, h, w) = shape;
        let seed = 10 * seed as u64;
        let x = random_vec(n * cin * h * w, seed);
        let wt = random_vec(cout * cin * 9, seed + 1);
        let b = random_vec(cout, seed + 2);
        let dy = random_vec(n * cout * h * w, seed + 3);
        let expected = references(shape, &x, &wt, &b, &dy);
        for isa in [Isa::Portable, Isa::Avx2Fma] {
            let mut y = vec![f32::NAN; n * cout * h * w];
            let mut dx = vec![f32::NAN; n * cin * h * w];
            let mut dw = vec![f32::NAN; cout * cin * 9];
            direct::forward(isa, n, cin, cout, h, w, &x, &wt, &b, &mut y);
            direct::backward_input(isa, n, cin, cout, h, w, &dy, &wt, &mut dx);
            direct::backward_weight(isa, n, cin, cout, h, w, &dy, &x, &mut dw);
            // Each output sums products of values in [-1, 1]: f32 rounding grows about with
            // the square root of the number of terms.
            let atol = |terms: usize| 1e-5 * (terms as f32).sqrt().max(1.0);
            let what = |op: &str| format!("{op} {isa:?} {shape:?}");
            assert_close(&what("forward"), &y, &expected[0], 1e-4, atol(cin * 9));
            assert_close(&what("backward_input"), &dx, &expected[1], 1e-4, atol(cout * 9));
            assert_close(&what("backward_weight"), &dw, &expected[2], 1e-4, atol(n * h * w));
        }
    }
}

#[test]
fn the_fast_copy_agrees_with_the_baseline_copy() {
    // Where AVX2 + FMA are present, the two copies differ only by FMA's single rounding.
    let (n, cin, cout, h, w) = (4, 48, 16, 28, 28);
    let x = random_vec(n * cin * h * w, 1);
    let wt = random_vec(cout * cin * 9, 2);
    let b = random_vec(cout, 3);
    let run = |isa| {
        let mut y = vec![0.0; n * cout * h * w];
        direct::forward(isa, n, cin, cout, h, w, &x, &wt, &b, &mut y);
        y
    };
    assert_close("avx2 vs portable", &run(Isa::Avx2Fma), &run(Isa::Portable), 1e-5, 1e-4);
}
