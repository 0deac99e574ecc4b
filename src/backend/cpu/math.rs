//! The transcendental functions of the CPU ops, written as branch-free f32 arithmetic so that a
//! loop over a slice vectorizes (SSE/AVX natively, simd128 in wasm). `f32::exp` is a scalar
//! libm call on every target, and in wasm it was the largest single cost of the network after
//! sgemm (GroupNorm's fused SiLU evaluates one sigmoid per activation).

/// `1 / ln 2`, and `ln 2` split into a part exact in f32 and the rest (Cody-Waite reduction).
const LOG2_E: f32 = std::f32::consts::LOG2_E;
const LN_2_HI: f32 = 0.693_359_4;
const LN_2_LO: f32 = -2.121_944_4e-4;
/// Adding and subtracting 1.5 * 2^23 rounds an f32 of magnitude below 2^22 to an integer.
const ROUND: f32 = 12_582_912.0;

/// `e^x`, within 2 ulp of the exact value for x in [-87, 88]; arguments outside are clamped
/// (so -inf gives ~1e-38, not 0; every caller passes `-|v|` into a sigmoid, where that is
/// invisible). NaN stays NaN.
#[inline]
pub fn exp(x: f32) -> f32 {
    let x = x.clamp(-87.0, 88.0);
    // x = k ln 2 + r with k an integer and |r| <= ln(2) / 2, so e^x = 2^k e^r.
    let k = (x * LOG2_E + ROUND) - ROUND;
    let r = (x - k * LN_2_HI) - k * LN_2_LO;
    // e^r by its degree-6 Taylor-like minimax polynomial (Cephes' expf coefficients).
    let p = 1.987_569_1e-4;
    let p = p * r + 1.398_199_9e-3;
    let p = p * r + 8.333_452e-3;
    let p = p * r + 4.166_579_6e-2;
    let p = p * r + 1.666_666_5e-1;
    let p = p * r + 0.5;
    let er = p * r * r + r + 1.0;
    // 2^k built in the exponent bits: k is in [-126, 127] after the clamp, a normal float.
    let two_k = f32::from_bits(((k as i32 + 127) << 23) as u32);
    er * two_k
}

/// `1 / (1 + e^-v)` through `e^-|v|`, which never overflows (the kernels use the same form).
#[inline]
pub fn sigmoid(v: f32) -> f32 {
    let e = exp(-v.abs());
    let s = 1.0 / (1.0 + e);
    if v >= 0.0 {
        s
    } else {
        e * s
    }
}

/// `d silu(v) / dv = s + v s (1 - s)` with `s = sigmoid(v)`.
#[inline]
pub fn silu_grad(v: f32) -> f32 {
    let s = sigmoid(v);
    s + v * s * (1.0 - s)
}

/// Independent accumulators of [`sum_f64`]: one running sum is a dependency chain the compiler
/// may not reorder, eight are a loop it vectorizes (f64x2 in wasm, AVX natively).
const LANES: usize = 8;

/// `sum f(x_i)` accumulated in f64 (the CPU backend's reductions are the accurate side of every
/// comparison with the kernels).
#[inline]
pub fn sum_f64(xs: &[f32], f: impl Fn(f64) -> f64) -> f64 {
    let mut lanes = [0.0f64; LANES];
    let chunks = xs.chunks_exact(LANES);
    let rest: f64 = chunks.remainder().iter().map(|&v| f(v as f64)).sum();
    for chunk in chunks {
        for (lane, &v) in lanes.iter_mut().zip(chunk) {
            *lane += f(v as f64);
        }
    }
    lanes.iter().sum::<f64>() + rest
}

/// `sum a_i b_i` accumulated in f64, like [`sum_f64`].
#[inline]
pub fn dot_f64(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len(), "dot_f64: lengths");
    let mut lanes = [0.0f64; LANES];
    let (chunks_a, chunks_b) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let rest: f64 = chunks_a.remainder().iter().zip(chunks_b.remainder()).map(|(&x, &y)| x as f64 * y as f64).sum();
    for (ca, cb) in chunks_a.zip(chunks_b) {
        for ((lane, &x), &y) in lanes.iter_mut().zip(ca).zip(cb) {
            *lane += x as f64 * y as f64;
        }
    }
    lanes.iter().sum::<f64>() + rest
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Relative error against f64's exp, over a dense sweep of the range the sigmoid uses and
    /// of the positive side.
    #[test]
    fn exp_is_within_two_ulp_of_f64() {
        let mut worst = 0.0f64;
        for i in -870_000..=880_000 {
            let x = i as f32 * 1e-4;
            let exact = (x as f64).exp();
            worst = worst.max(((exp(x) as f64 - exact) / exact).abs());
        }
        assert!(worst < 2.0 * f32::EPSILON as f64, "worst relative error {worst:e}");
        assert_eq!(exp(0.0), 1.0);
        assert!(exp(f32::NAN).is_nan());
    }

    #[test]
    fn sums_add_every_value_once() {
        for n in [0, 1, 7, 8, 9, 100] {
            let xs: Vec<f32> = (0..n).map(|i| i as f32 * 0.5 - 3.0).collect();
            let exact: f64 = xs.iter().map(|&v| (v as f64).powi(2)).sum();
            assert!((sum_f64(&xs, |v| v * v) - exact).abs() < 1e-9, "n = {n}");
            assert!((dot_f64(&xs, &xs) - exact).abs() < 1e-9, "n = {n}");
        }
    }

    #[test]
    fn sigmoid_is_exact_enough_and_saturates_without_nan() {
        for i in -2000..=2000 {
            let v = i as f32 * 0.05;
            let exact = 1.0 / (1.0 + (-(v as f64)).exp());
            assert!((sigmoid(v) as f64 - exact).abs() < 1e-7, "sigmoid({v})");
        }
        assert_eq!(sigmoid(f32::INFINITY), 1.0);
        assert!(sigmoid(f32::NEG_INFINITY) < 1e-37);
        assert!(sigmoid(f32::NAN).is_nan());
    }
}
