//! The schedule math of consistency training, on the host in f64: the parameterization of the
//! consistency function, the Karras time grid, the discretization and target-EMA curricula of the
//! original and the improved consistency training, the choice of noise level n, the loss weighting
//! and the pseudo-Huber constant. Per-step values computed here are passed to the kernels.
//!
//! Section numbers are those of `docs/paper.md` (its table maps each to a heading), which follows Song et al.,
//! "Consistency Models" (2023) and Song & Dhariwal, "Improved Techniques for Training Consistency
//! Models" (2023).

/// The smallest time: f(x, EPS) = x is the boundary condition (section 1).
pub const EPS: f64 = 0.002;
/// The largest time: sampling starts from x_T ~ N(0, T^2 I) (section 1).
pub const T: f64 = 80.0;
/// The standard deviation of the data, which the parameterization is scaled to (section 1).
pub const SIGMA_DATA: f64 = 0.5;
/// The Karras grid's exponent: larger values crowd the grid towards EPS (section 1).
pub const RHO: f64 = 7.0;
/// Mean of ln t under improved CT's lognormal choice of noise level (section 6).
pub const P_MEAN: f64 = -1.1;
/// Standard deviation of ln t under improved CT's lognormal choice of noise level (section 6).
pub const P_STD: f64 = 2.0;

// Section 2, "Consistency function and parameterization":
// f_theta(x, t) = c_skip(t) x + c_out(t) F_theta(c_in(t) x, c_noise(t)). Writing the coefficients
// with (t - eps) makes c_skip(eps) = 1 and c_out(eps) = 0 exactly, so f(x, eps) = x holds exactly,
// not just up to rounding.

/// The weight of the skip connection: 1 at t = eps, falling to ~0 at t = T.
pub fn c_skip(t: f64) -> f64 {
    SIGMA_DATA * SIGMA_DATA / ((t - EPS) * (t - EPS) + SIGMA_DATA * SIGMA_DATA)
}

/// The weight of the network's output: 0 at t = eps, rising to ~sigma_data at t = T.
pub fn c_out(t: f64) -> f64 {
    SIGMA_DATA * (t - EPS) / (SIGMA_DATA * SIGMA_DATA + t * t).sqrt()
}

/// Scales the network's input x (data plus noise of level t) to unit variance.
pub fn c_in(t: f64) -> f64 {
    1.0 / (t * t + SIGMA_DATA * SIGMA_DATA).sqrt()
}

/// The time as the network's time embedding sees it.
pub fn c_noise(t: f64) -> f64 {
    0.25 * t.ln()
}

// Section 4, the EDM denoiser D(x, t) = c_skip_edm(t) x + c_out_edm(t) F(c_in(t) x, c_noise(t))
// (c_in and c_noise as above), trained by denoising score matching with ln t ~ N(P_MEAN_EDM,
// P_STD_EDM^2) and weight lambda_edm(t).

/// Mean of ln t in the EDM teacher's denoising score matching.
pub const P_MEAN_EDM: f64 = -1.2;
/// Standard deviation of ln t in the EDM teacher's denoising score matching.
pub const P_STD_EDM: f64 = 1.2;

/// The EDM denoiser's skip weight: 1 at t = 0 (no noise: the input is the answer).
pub fn edm_c_skip(t: f64) -> f64 {
    SIGMA_DATA * SIGMA_DATA / (t * t + SIGMA_DATA * SIGMA_DATA)
}

/// The EDM denoiser's output weight.
pub fn edm_c_out(t: f64) -> f64 {
    t * SIGMA_DATA / (t * t + SIGMA_DATA * SIGMA_DATA).sqrt()
}

/// The EDM loss weight `(t^2 + sigma_data^2) / (t sigma_data)^2`, which makes the loss of the
/// network's output unit-scaled at every t.
pub fn edm_lambda(t: f64) -> f64 {
    (t * t + SIGMA_DATA * SIGMA_DATA) / (t * SIGMA_DATA).powi(2)
}

/// Section 1, "Time grid (Karras et al.)": `n` times ascending from t_1 = EPS to t_n = T, evenly
/// spaced in t^(1/rho), so that most of them lie at low noise where the trajectories bend.
/// The endpoints are set exactly: (eps^(1/rho))^rho itself is eps only up to rounding.
pub fn karras_grid(n: usize) -> Vec<f64> {
    assert!(n >= 2, "a time grid needs at least 2 points, got {n}");
    let (low, high) = (EPS.powf(1.0 / RHO), T.powf(1.0 / RHO));
    let mut times: Vec<f64> = (0..n).map(|i| (low + i as f64 / (n - 1) as f64 * (high - low)).powf(RHO)).collect();
    times[0] = EPS;
    times[n - 1] = T;
    times
}

/// Which consistency-training curriculum sets the discretization N(k) and the target EMA mu(k).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum CtKind {
    /// Section 5, "Consistency training (CT)": N grows like a square root from `s0` to `s1 + 1`
    /// points, and the target network theta_minus follows theta with decay mu(k), which rises
    /// from `mu0` as N grows.
    Original { s0: usize, s1: usize, mu0: f64 },
    /// Section 6, "Improved consistency training (iCT)": N doubles from `s0 + 1` in equal stages
    /// up to `s1 + 1` points, and the target is the online network itself (mu = 0).
    Improved { s0: usize, s1: usize },
}

/// A consistency-training curriculum over a run of `total_steps` (the papers' K) steps.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CtSchedule {
    pub kind: CtKind,
    pub total_steps: u32,
}

impl CtSchedule {
    /// N(k): the number of points of the time grid at step k (0-based).
    pub fn discretization(&self, k: u32) -> usize {
        let total = self.total_steps;
        match self.kind {
            CtKind::Original { s0, s1, .. } => {
                // N(k) = ceil(sqrt(k/K ((s1+1)^2 - s0^2) + s0^2) - 1) + 1. Steps past K keep the
                // final N = s1 + 1 rather than extrapolating beyond the planned range.
                let fraction = k.min(total) as f64 / total.max(1) as f64;
                let (s0, s1) = (s0 as f64, s1 as f64);
                ((fraction * ((s1 + 1.0).powi(2) - s0 * s0) + s0 * s0).sqrt() - 1.0).ceil() as usize + 1
            }
            CtKind::Improved { s0, s1 } => {
                // N(k) = min(s0 2^floor(k/K'), s1) + 1 with K' = floor(K / (log2(floor(s1/s0)) + 1)):
                // the run is split into equal stages, one per doubling, the last at s1.
                // K' is at least one step, so a run shorter than its number of stages still works.
                let doublings = ((s1 / s0) as f64).log2() + 1.0;
                let stage_steps = ((total as f64 / doublings).floor() as u32).max(1);
                s0.saturating_mul(2usize.saturating_pow(k / stage_steps)).min(s1) + 1
            }
        }
    }

    /// mu(k): the decay of the target network's EMA, theta_minus <- mu theta_minus + (1 - mu) theta.
    pub fn target_ema(&self, k: u32) -> f64 {
        match self.kind {
            // mu(k) = exp(s0 ln(mu0) / N(k)): mu0 at the start, closer to 1 as the grid refines.
            CtKind::Original { s0, mu0, .. } => (s0 as f64 * mu0.ln() / self.discretization(k) as f64).exp(),
            // iCT found the EMA teacher harmful: theta_minus = stopgrad(theta).
            CtKind::Improved { .. } => 0.0,
        }
    }
}

/// How the index n of the pair (t_n, t_{n+1}) is drawn for each training sample.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IndexChoice {
    /// n ~ U{1 .. N-1}, as in the original CT (section 5).
    Uniform,
    /// P(n) proportional to the mass a lognormal, ln t ~ N(P_MEAN, P_STD^2), puts on
    /// [t_n, t_{n+1}], as in iCT (section 6): most training goes to intermediate noise levels.
    Lognormal,
}

/// The time grid of one discretization N, with the distribution of the index n over its N - 1
/// adjacent pairs.
///
/// Indices are 0-based: index i stands for the pair `(times[i], times[i + 1])`, the papers' n = i + 1.
#[derive(Clone, Debug)]
pub struct NoiseLevels {
    times: Vec<f64>,
    probabilities: Vec<f64>,
    /// cumulative[i] = P(index <= i); the last entry is exactly 1.
    cumulative: Vec<f64>,
}

impl NoiseLevels {
    pub fn new(n: usize, choice: IndexChoice) -> Self {
        let times = karras_grid(n);
        let mass: Vec<f64> = match choice {
            IndexChoice::Uniform => vec![1.0; n - 1],
            IndexChoice::Lognormal => {
                // The lognormal's CDF at t is (1 + erf((ln t - P_mean) / (sqrt2 P_std))) / 2;
                // the constant parts cancel in the differences and in the normalization.
                let cdf = |t: f64| erf((t.ln() - P_MEAN) / (std::f64::consts::SQRT_2 * P_STD));
                times.windows(2).map(|pair| cdf(pair[1]) - cdf(pair[0])).collect()
            }
        };
        let total: f64 = mass.iter().sum();
        let probabilities: Vec<f64> = mass.iter().map(|m| m / total).collect();
        let mut cumulative: Vec<f64> = probabilities
            .iter()
            .scan(0.0, |sum, p| {
                *sum += p;
                Some(*sum)
            })
            .collect();
        // Rounding may leave the sum a few ulps from 1; any u in [0, 1) must find an index.
        cumulative[n - 2] = 1.0;
        NoiseLevels { times, probabilities, cumulative }
    }

    /// t_1 .. t_N, ascending from EPS to T.
    pub fn times(&self) -> &[f64] {
        &self.times
    }

    /// P(index = i) for i in 0..N-1; sums to 1.
    pub fn probabilities(&self) -> &[f64] {
        &self.probabilities
    }

    /// P(index <= i) for i in 0..N-1, ending at exactly 1: the table `sample_index` searches, for
    /// a kernel that draws indices itself.
    pub fn cumulative(&self) -> &[f64] {
        &self.cumulative
    }

    /// The index i whose cumulative interval [P(index < i), P(index <= i)) holds `u`, a uniform
    /// in [0, 1) such as a Philox draw: u = 0 gives the first index with nonzero mass.
    pub fn sample_index(&self, u: f64) -> usize {
        // The first i with cumulative[i] > u; u >= 1 (outside the contract) gives the last index.
        self.cumulative.partition_point(|&c| c <= u).min(self.cumulative.len() - 1)
    }
}

/// The loss weighting lambda(t_n) of a pair (t_n, t_{n+1}).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Weighting {
    /// lambda = 1, as in the original CT (section 5).
    Uniform,
    /// lambda = 1 / (t_{n+1} - t_n), as in iCT (section 6): the two outputs differ roughly in
    /// proportion to the step, so this puts every pair's loss on a comparable scale, and it weights
    /// the low noise levels, where the Karras steps are small, up.
    InverseStep,
}

impl Weighting {
    pub fn lambda(self, t_n: f64, t_next: f64) -> f64 {
        match self {
            Weighting::Uniform => 1.0,
            Weighting::InverseStep => 1.0 / (t_next - t_n),
        }
    }
}

/// The constant c of iCT's pseudo-Huber metric sqrt(||x - y||^2 + c^2) - c for images of `dim`
/// values (section 6): 0.00054 sqrt(dim), about 0.015 for MNIST's 784 pixels.
pub fn pseudo_huber_c(dim: usize) -> f64 {
    0.00054 * (dim as f64).sqrt()
}

// Section 10, "Progressive distillation": a student of M steps on the Karras grid of M + 1
// points, trained to match two teacher steps on the nested grid of 2M + 1 points.

/// Section 10's truncated SNR weighting `max(sigma_data^2 / t^2, 1)`.
pub fn pd_weight(t: f64) -> f64 {
    (SIGMA_DATA * SIGMA_DATA / (t * t)).max(1.0)
}

/// Section 10's target: the denoiser output that takes `x_t` at time t to the teacher's
/// `x''` at time s < t in one deterministic step, `x_target = (x'' - (s/t) x_t) / (1 - s/t)`,
/// as the coefficients (of x'', of x_t).
pub fn pd_target_coefficients(t: f64, s: f64) -> (f64, f64) {
    let ratio = s / t;
    (1.0 / (1.0 - ratio), -ratio / (1.0 - ratio))
}

// Section 11, "Consistency tuning (ECT)".

/// The second point r < t of consistency tuning at `stage`:
/// `r = t (1 - q^-(stage+1) (1 + 8 sigmoid(-t)))`. At or below EPS the target is the clean
/// digit itself (plain denoising).
pub fn ect_second_time(t: f64, q: f64, stage: u32) -> f64 {
    let sigmoid = 1.0 / (1.0 + t.exp());
    t * (1.0 - q.powi(-(stage as i32 + 1)) * (1.0 + 8.0 * sigmoid))
}

/// The error function, to within about 1e-15 (a few ulps) on the whole real line.
///
/// Below 3, the series erf x = 2/sqrt(pi) e^(-x^2) sum_{k>=0} 2^k x^(2k+1) / (1 3 5 .. (2k+1))
/// (Abramowitz & Stegun 7.1.6): its terms are all positive, so unlike the Taylor series it loses
/// nothing to cancellation; just below 3 it needs about 45 terms. From 3 on, the continued fraction
/// erfc x = e^(-x^2)/sqrt(pi) / (x + (1/2)/(x + 1/(x + (3/2)/(x + 2/(x + ...))))) (A&S 7.1.14),
/// which converges faster the larger x is: 50 levels are exact to rounding at x = 3.
fn erf(x: f64) -> f64 {
    if x < 0.0 {
        return -erf(-x);
    }
    let x2 = x * x;
    if x < 3.0 {
        let (mut term, mut sum, mut k) = (x, x, 0.0);
        while term > sum * 1e-17 {
            k += 1.0;
            term *= 2.0 * x2 / (2.0 * k + 1.0);
            sum += term;
        }
        2.0 / std::f64::consts::PI.sqrt() * (-x2).exp() * sum
    } else {
        let fraction = (1..=50).rev().fold(x, |tail, level| x + level as f64 / 2.0 / tail);
        1.0 - (-x2).exp() / std::f64::consts::PI.sqrt() / fraction
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Relative closeness, for values computed here against ones computed by hand (in 30-digit
    /// arithmetic): both sides are correct to a few ulps.
    fn assert_close(actual: f64, expected: f64, what: &str) {
        let error = (actual - expected).abs() / expected.abs().max(1e-300);
        assert!(error < 1e-14, "{what}: {actual} vs {expected} (relative error {error:e})");
    }

    #[test]
    fn the_boundary_condition_holds_exactly_at_eps() {
        // f(x, eps) = 1 * x + 0 * F = x, with no rounding.
        assert_eq!(c_skip(EPS), 1.0);
        assert_eq!(c_out(EPS), 0.0);
    }

    #[test]
    fn the_parameterization_matches_hand_computed_values() {
        // t = 1: c_skip = 0.25 / (0.998^2 + 0.25) = 0.25 / 1.246004;
        // c_out = 0.5 * 0.998 / sqrt(1.25); c_in = 1 / sqrt(1.25); c_noise = ln(1) / 4 = 0.
        assert_close(c_skip(1.0), 0.2006414104609616, "c_skip(1)");
        assert_close(c_out(1.0), 0.446319168308958, "c_out(1)");
        assert_close(c_in(1.0), 0.8944271909999159, "c_in(1)");
        assert_eq!(c_noise(1.0), 0.0);
        // t = 0.1: c_skip = 0.25 / (0.098^2 + 0.25); c_out = 0.049 / sqrt(0.26); c_in = 1 / sqrt(0.26).
        assert_close(c_skip(0.1), 0.9630051925239981, "c_skip(0.1)");
        assert_close(c_out(0.1), 0.09609690621771018, "c_out(0.1)");
        assert_close(c_in(0.1), 1.9611613513818402, "c_in(0.1)");
        assert_close(c_noise(0.1), -0.5756462732485115, "c_noise(0.1)");
        // t = T = 80: c_skip = 0.25 / (79.998^2 + 0.25); c_out = 39.999 / sqrt(6400.25);
        // c_in = 1 / sqrt(6400.25); c_noise = ln(80) / 4.
        assert_close(c_skip(T), 0.00003906292722635221, "c_skip(T)");
        assert_close(c_out(T), 0.49997773490522646, "c_out(T)");
        assert_close(c_in(T), 0.012499755866527325, "c_in(T)");
        assert_close(c_noise(T), 1.0955066586684703, "c_noise(T)");
    }

    #[test]
    fn erf_matches_known_values_and_is_odd() {
        // From tables and 30-digit arithmetic; 2.08 is where the series' rounding error peaks.
        let known = [
            (0.01, 0.011283415555849616),
            (0.1, 0.1124629160182849),
            (0.5, 0.5204998778130465),
            (1.0, 0.8427007929497149),
            (1.5, 0.9661051464753108),
            (2.0, 0.9953222650189527),
            (2.08, 0.9967344086695764),
            (2.5, 0.999593047982555),
            (3.0, 0.9999779095030014),
            (3.5, 0.9999992569016276),
            (4.0, 0.9999999845827421),
            (5.0, 0.9999999999984626),
        ];
        for (x, value) in known {
            assert!((erf(x) - value).abs() < 1e-15, "erf({x}) = {} vs {value}", erf(x));
            assert_eq!(erf(-x), -erf(x), "erf(-{x})");
        }
        assert_eq!(erf(0.0), 0.0);
        assert_eq!(erf(f64::INFINITY), 1.0);
        // The two methods agree where they meet (the true step over 1e-13 is 1.4e-17).
        let (below, at) = (erf(3.0 - 1e-13), erf(3.0));
        assert!((at - below).abs() < 1e-15, "erf is continuous at 3: {below} vs {at}");
    }

    #[test]
    fn the_karras_grid_has_exact_endpoints_and_ascends() {
        for n in [2, 3, 5, 11, 18, 151, 1281] {
            let times = karras_grid(n);
            assert_eq!(times.len(), n);
            assert_eq!(times[0], EPS, "t_1 for N = {n}");
            assert_eq!(times[n - 1], T, "t_N for N = {n}");
            assert!(times.windows(2).all(|pair| pair[0] < pair[1]), "N = {n} is not ascending");
        }
        // N = 5: t_i = (eps^(1/7) + (i-1)/4 (80^(1/7) - eps^(1/7)))^7.
        let times = karras_grid(5);
        assert_close(times[1], 0.16975275626876402, "t_2 of 5");
        assert_close(times[2], 2.5152189761471586, "t_3 of 5");
        assert_close(times[3], 17.52783196464411, "t_4 of 5");
    }

    #[test]
    fn the_original_curriculum_grows_from_s0_to_s1_plus_one() {
        let schedule = CtSchedule { kind: CtKind::Original { s0: 2, s1: 150, mu0: 0.9 }, total_steps: 1000 };
        assert_eq!(schedule.discretization(0), 2);
        assert_eq!(schedule.discretization(1000), 151);
        // k = 1: ceil(sqrt(0.001 (151^2 - 4) + 4) - 1) + 1 = ceil(sqrt(26.797) - 1) + 1 = 5 + 1.
        assert_eq!(schedule.discretization(1), 6);
        // k = 500: ceil(sqrt(0.5 * 22797 + 4) - 1) + 1 = ceil(105.78) + 1.
        assert_eq!(schedule.discretization(500), 107);
        assert_eq!(schedule.discretization(999), 151);
        assert_eq!(schedule.discretization(5000), 151, "steps past K keep the final N");
        let n: Vec<usize> = (0..=1000).map(|k| schedule.discretization(k)).collect();
        assert!(n.windows(2).all(|pair| pair[0] <= pair[1]), "N(k) is not monotone");

        // mu(k) = exp(2 ln(0.9) / N(k)) = 0.9^(2 / N(k)).
        assert_close(schedule.target_ema(0), 0.9, "mu(0)");
        assert_close(schedule.target_ema(1), 0.9654893846056297, "mu(1), N = 6");
        assert_close(schedule.target_ema(500), 0.9980325824752019, "mu(500), N = 107");
        assert_close(schedule.target_ema(1000), 0.9986054697436056, "mu(K), N = 151");
    }

    #[test]
    fn the_improved_curriculum_doubles_in_equal_stages() {
        // s1 / s0 = 128 = 2^7: K' = K / 8, N = 11, 21, 41, ..., 1281.
        let schedule = CtSchedule { kind: CtKind::Improved { s0: 10, s1: 1280 }, total_steps: 8000 };
        let expected = [(0, 11), (999, 11), (1000, 21), (2000, 41), (6999, 641), (7000, 1281), (8000, 1281)];
        for (k, n) in expected {
            assert_eq!(schedule.discretization(k), n, "N({k})");
        }
        assert_eq!(schedule.target_ema(0), 0.0);
        assert_eq!(schedule.target_ema(5000), 0.0);

        // The 12,000-step run of docs/results.md (independent implementation): s1 = 160, K' = 12000 / 5 = 2400.
        let schedule = CtSchedule { kind: CtKind::Improved { s0: 10, s1: 160 }, total_steps: 12_000 };
        let stages: Vec<usize> = [0, 2400, 4800, 7200, 9600, 11_999].map(|k| schedule.discretization(k)).to_vec();
        assert_eq!(stages, [11, 21, 41, 81, 161, 161]);

        // A ratio that is not a power of two: floor(150 / 10) = 15, K' = floor(1000 / (log2 15 + 1)) = 203.
        let schedule = CtSchedule { kind: CtKind::Improved { s0: 10, s1: 150 }, total_steps: 1000 };
        assert_eq!([202, 203, 608, 609, 812, 1000].map(|k| schedule.discretization(k)), [11, 21, 41, 81, 151, 151]);
    }

    #[test]
    fn uniform_choice_gives_every_pair_the_same_mass() {
        let levels = NoiseLevels::new(18, IndexChoice::Uniform);
        assert!(levels.probabilities().iter().all(|&p| (p - 1.0 / 17.0).abs() < 1e-16));
        assert_eq!(levels.times(), karras_grid(18));
    }

    #[test]
    fn lognormal_probabilities_sum_to_one_and_peak_near_p_mean() {
        for n in [11, 41, 161, 1281] {
            let levels = NoiseLevels::new(n, IndexChoice::Lognormal);
            let p = levels.probabilities();
            assert_eq!(p.len(), n - 1);
            assert!(p.iter().all(|&p| p > 0.0), "N = {n}: every pair has mass");
            let sum: f64 = p.iter().sum();
            assert!((sum - 1.0).abs() < 1e-12, "N = {n}: the probabilities sum to {sum}");

            // The mass per unit of ln t is highest on the pair whose interval holds P_mean (or its
            // neighbour: the average of the density over uneven intervals can shift the peak).
            let ln_t: Vec<f64> = levels.times().iter().map(|t| t.ln()).collect();
            let density = |i: usize| p[i] / (ln_t[i + 1] - ln_t[i]);
            let peak = (0..n - 1).max_by(|&a, &b| density(a).total_cmp(&density(b))).unwrap();
            let holding_p_mean = ln_t.partition_point(|&l| l <= P_MEAN) - 1;
            assert!(peak.abs_diff(holding_p_mean) <= 1, "N = {n}: peak at {peak}, P_mean in {holding_p_mean}");
        }
    }

    #[test]
    fn the_sampler_maps_the_ends_of_the_unit_interval_to_the_ends_of_the_grid() {
        // The largest uniform of the project's Philox (24 bits) and the largest f64 below 1.
        let nearly_one = [1.0 - 2f64.powi(-24), 1.0 - f64::EPSILON / 2.0];
        for choice in [IndexChoice::Uniform, IndexChoice::Lognormal] {
            for n in [2, 11, 161, 1281] {
                let levels = NoiseLevels::new(n, choice);
                assert_eq!(levels.sample_index(0.0), 0, "{choice:?}, N = {n}");
                for u in nearly_one {
                    assert_eq!(levels.sample_index(u), n - 2, "{choice:?}, N = {n}, u = {u}");
                }
                assert_eq!(*levels.cumulative().last().unwrap(), 1.0);
            }
        }
    }

    #[test]
    fn the_samplers_histogram_matches_the_probabilities() {
        // With evenly spaced u, each index's count is its probability times the count, up to one
        // draw at each end of its cumulative interval.
        const DRAWS: usize = 100_000;
        for choice in [IndexChoice::Uniform, IndexChoice::Lognormal] {
            for n in [11, 161, 1281] {
                let levels = NoiseLevels::new(n, choice);
                let mut counts = vec![0usize; n - 1];
                for j in 0..DRAWS {
                    counts[levels.sample_index((j as f64 + 0.5) / DRAWS as f64)] += 1;
                }
                for (i, (&count, &p)) in counts.iter().zip(levels.probabilities()).enumerate() {
                    let frequency = count as f64 / DRAWS as f64;
                    assert!((frequency - p).abs() <= 1.0 / DRAWS as f64 + 1e-12, "{choice:?}, N = {n}, index {i}");
                }
            }
        }
    }

    #[test]
    fn weightings_and_the_pseudo_huber_constant() {
        let times = karras_grid(11);
        assert_eq!(Weighting::Uniform.lambda(times[3], times[4]), 1.0);
        assert_eq!(Weighting::InverseStep.lambda(times[3], times[4]), 1.0 / (times[4] - times[3]));
        // 0.00054 * sqrt(784) = 0.00054 * 28.
        assert_close(pseudo_huber_c(crate::image::PIXELS), 0.01512, "c for MNIST");
    }

    #[test]
    fn progressive_distillation_target_takes_one_step_to_the_teachers_point() {
        // One student step x_s = D + (s/t)(x_t - D) with D = x_target lands on x''.
        let (t, s, x_t, x2) = (3.0, 1.2, 0.7, -0.4);
        let (a, b) = pd_target_coefficients(t, s);
        let d = a * x2 + b * x_t;
        assert!((d + (s / t) * (x_t - d) - x2).abs() < 1e-14);
        // max(0.25 / t^2, 1): 1 above t = sigma_data, the SNR below.
        assert_eq!(pd_weight(2.0), 1.0);
        assert_close(pd_weight(0.1), 25.0, "pd weight at 0.1");
    }

    #[test]
    fn ect_gap_shrinks_by_stages_and_reaches_plain_denoising_at_low_noise() {
        // Large t: sigmoid(-t) ~ 0, r = t (1 - 2^-(s+1)): t/2, 3t/4, 7t/8, ...
        assert!((ect_second_time(80.0, 2.0, 0) - 40.0).abs() < 1e-9);
        assert!((ect_second_time(80.0, 2.0, 2) - 70.0).abs() < 1e-9);
        // Small t, stage 0: 1 - (1/2)(1 + 8 * 0.5) < 0, so the target is the clean digit.
        assert!(ect_second_time(0.01, 2.0, 0) < EPS);
        for t in [0.01, 0.3, 2.0, 20.0] {
            let gaps: Vec<f64> = (0..6).map(|s| t - ect_second_time(t, 2.0, s)).collect();
            assert!(gaps.windows(2).all(|g| g[1] < g[0]), "t = {t}: gaps {gaps:?}");
            assert!(gaps.iter().all(|&g| g > 0.0), "r < t");
        }
    }
}
