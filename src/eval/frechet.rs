//! The Frechet distance between two Gaussians fitted to feature sets (the "F" of FID), in f64:
//!
//! `d^2 = |mu1 - mu2|^2 + tr(S1 + S2 - 2 (S1^{1/2} S2 S1^{1/2})^{1/2})`
//!
//! Both square roots come from symmetric eigendecompositions (a cyclic Jacobi solver: the
//! matrices are 128 x 128, a few milliseconds), with eigenvalues that rounding pushed slightly
//! below zero clamped to zero. `S1^{1/2} S2 S1^{1/2}` has the same eigenvalues as `S1 S2`, so
//! this is the usual `tr sqrt(S1 S2)` without a non-symmetric matrix square root.

/// Mean and covariance of a set of feature vectors.
#[derive(Clone, Debug, PartialEq)]
pub struct FeatureStats {
    /// Feature dimension d.
    pub dim: usize,
    /// Vectors the statistics were computed from.
    pub count: usize,
    /// `[d]`.
    pub mean: Vec<f64>,
    /// `[d, d]`, row-major, normalised by `count - 1` (unbiased).
    pub cov: Vec<f64>,
}

impl FeatureStats {
    /// Statistics of `features`, `count = features.len() / dim` vectors of `dim` values one after
    /// another. Needs at least two vectors.
    pub fn new(features: &[f32], dim: usize) -> crate::Result<FeatureStats> {
        if dim == 0 || !features.len().is_multiple_of(dim) || features.len() / dim < 2 {
            return Err(crate::Error::Invalid(format!(
                "feature statistics need at least two whole vectors of {dim} values, got {} values",
                features.len()
            )));
        }
        let count = features.len() / dim;
        let mut mean = vec![0.0f64; dim];
        for row in features.chunks_exact(dim) {
            for (m, &v) in mean.iter_mut().zip(row) {
                *m += v as f64;
            }
        }
        mean.iter_mut().for_each(|m| *m /= count as f64);
        // Upper triangle of sum (x - mu)(x - mu)^T, then mirrored.
        let mut cov = vec![0.0f64; dim * dim];
        let mut centred = vec![0.0f64; dim];
        for row in features.chunks_exact(dim) {
            for ((c, &v), m) in centred.iter_mut().zip(row).zip(&mean) {
                *c = v as f64 - m;
            }
            for i in 0..dim {
                let ci = centred[i];
                let out = &mut cov[i * dim..(i + 1) * dim];
                for j in i..dim {
                    out[j] += ci * centred[j];
                }
            }
        }
        for i in 0..dim {
            for j in i..dim {
                let v = cov[i * dim + j] / (count - 1) as f64;
                cov[i * dim + j] = v;
                cov[j * dim + i] = v;
            }
        }
        if mean.iter().chain(&cov).any(|v| !v.is_finite()) {
            return Err(crate::Error::Invalid("feature statistics: the features contain NaN or infinity".into()));
        }
        Ok(FeatureStats { dim, count, mean, cov })
    }
}

/// The Frechet distance (squared, as FID reports it) between the Gaussians of `a` and `b`.
pub fn frechet_distance(a: &FeatureStats, b: &FeatureStats) -> crate::Result<f64> {
    if a.dim != b.dim {
        return Err(crate::Error::Invalid(format!(
            "Frechet distance of {}- and {}-dimensional features",
            a.dim, b.dim
        )));
    }
    let d = a.dim;
    let mean_term: f64 = a.mean.iter().zip(&b.mean).map(|(x, y)| (x - y) * (x - y)).sum();
    let trace = |m: &[f64]| (0..d).map(|i| m[i * d + i]).sum::<f64>();
    // S1^{1/2} = V sqrt(L) V^T.
    let (values, vectors) = symmetric_eigen(&a.cov, d);
    let roots: Vec<f64> = values.iter().map(|&l| l.max(0.0).sqrt()).collect();
    let mut sqrt_a = vec![0.0; d * d];
    for i in 0..d {
        for j in 0..d {
            sqrt_a[i * d + j] = (0..d).map(|k| vectors[i * d + k] * roots[k] * vectors[j * d + k]).sum();
        }
    }
    let mut m = matmul(&matmul(&sqrt_a, &b.cov, d), &sqrt_a, d);
    symmetrize(&mut m, d);
    let (inner, _) = symmetric_eigen(&m, d);
    let trace_sqrt: f64 = inner.iter().map(|&l| l.max(0.0).sqrt()).sum();
    // Rounding can leave a distance of identical sets a hair below zero.
    Ok((mean_term + trace(&a.cov) + trace(&b.cov) - 2.0 * trace_sqrt).max(0.0))
}

fn matmul(a: &[f64], b: &[f64], d: usize) -> Vec<f64> {
    let mut out = vec![0.0; d * d];
    for i in 0..d {
        for k in 0..d {
            let aik = a[i * d + k];
            if aik != 0.0 {
                for j in 0..d {
                    out[i * d + j] += aik * b[k * d + j];
                }
            }
        }
    }
    out
}

fn symmetrize(m: &mut [f64], d: usize) {
    for i in 0..d {
        for j in i + 1..d {
            let v = 0.5 * (m[i * d + j] + m[j * d + i]);
            m[i * d + j] = v;
            m[j * d + i] = v;
        }
    }
}

/// Eigenvalues and eigenvectors (the columns of the returned row-major `[d, d]` matrix) of the
/// symmetric matrix `a`, by cyclic Jacobi rotations until the off-diagonal part is negligible.
pub fn symmetric_eigen(a: &[f64], d: usize) -> (Vec<f64>, Vec<f64>) {
    assert_eq!(a.len(), d * d, "symmetric_eigen: a must be [{d}, {d}]");
    let mut a = a.to_vec();
    let mut v = vec![0.0; d * d];
    for i in 0..d {
        v[i * d + i] = 1.0;
    }
    let scale: f64 = a.iter().map(|x| x * x).sum::<f64>().sqrt();
    for _sweep in 0..100 {
        let off: f64 = (0..d)
            .flat_map(|i| (0..d).filter(move |&j| j != i).map(move |j| (i, j)))
            .map(|(i, j)| a[i * d + j] * a[i * d + j])
            .sum();
        if off.sqrt() <= 1e-15 * scale || scale == 0.0 {
            break;
        }
        for p in 0..d {
            for q in p + 1..d {
                let apq = a[p * d + q];
                if apq == 0.0 {
                    continue;
                }
                let (app, aqq) = (a[p * d + p], a[q * d + q]);
                // The rotation angle that zeroes a[p][q] (Golub & Van Loan, 8.5.2), in its
                // stable form: t = tan(theta) of the smaller root.
                let theta = (aqq - app) / (2.0 * apq);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                // A <- J^T A J on rows and columns p and q.
                for k in 0..d {
                    let (akp, akq) = (a[k * d + p], a[k * d + q]);
                    a[k * d + p] = c * akp - s * akq;
                    a[k * d + q] = s * akp + c * akq;
                }
                for k in 0..d {
                    let (apk, aqk) = (a[p * d + k], a[q * d + k]);
                    a[p * d + k] = c * apk - s * aqk;
                    a[q * d + k] = s * apk + c * aqk;
                }
                for k in 0..d {
                    let (vkp, vkq) = (v[k * d + p], v[k * d + q]);
                    v[k * d + p] = c * vkp - s * vkq;
                    v[k * d + q] = s * vkp + c * vkq;
                }
            }
        }
    }
    ((0..d).map(|i| a[i * d + i]).collect(), v)
}
