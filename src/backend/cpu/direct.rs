//! Direct 3x3 stride-1 convolutions ('same' padding) with register-blocked microkernels: the
//! network's main cost.
//!
//! sgemm did these as nine products of `[Cout, Cin] x [Cin, pixels]`, one per tap: with 16 to
//! 64 channels each product has a tiny inner dimension, so the kernels spent their time
//! packing operands and loading and storing the output tile nine times. Here one output tile
//! (4 channels x one run of pixels) stays in registers while every input channel and tap is
//! added into it, and the weights are packed once per call in the order the tile reads them.
//!
//! Layout: each sample is copied into a zero-padded grid with rows of `W + 2`, on which tap
//! `(ky, kx)` of every output pixel is the input at the fixed offset `ky (W + 2) + kx`. Outputs
//! are computed on the same rows (`H (W + 2)` "wide" pixels, rounded up to whole vectors) and
//! the two extra columns dropped. The backward to the input is the same convolution of the
//! padded output gradient with the weights transposed and flipped; the backward to the weights
//! is, per (output channel, input channel, tap), a dot product of the output gradient with
//! the shifted input, done four output channels by three taps at a time.

use rayon::prelude::*;

use super::simd::{madd_broadcast, madd_lanes, Isa};

/// Output channels of one register tile.
const CB: usize = 4;
/// Kernel size of the convolutions done here.
const K: usize = 3;
const TAPS: usize = K * K;

/// Pixels of one register tile (forward and backward to the input): 4 x 16 accumulators are 8
/// AVX registers; in the baseline copy (SSE2 natively, simd128 in wasm, 16 registers of 4
/// lanes) 4 x 8 are 8 registers.
fn tile_pixels(isa: Isa) -> usize {
    match isa {
        Isa::Avx2Fma => 16,
        Isa::Portable => 8,
    }
}

/// The padded grid of one sample, for a convolution from `cin` to `cout` channels.
#[derive(Clone, Debug)]
pub struct Plan {
    cin: usize,
    cout: usize,
    height: usize,
    width: usize,
    /// Row length on the padded grid, `W + 2`.
    row: usize,
    /// `(H + 2) (W + 2)`.
    plane: usize,
    /// Output pixels computed per channel: `H (W + 2)` rounded up to whole tiles.
    wide: usize,
    /// Length of one sample's padded copy: every plane plus what the last tile's taps reach.
    padded_len: usize,
    taps: [usize; TAPS],
}

impl Plan {
    pub fn new(cin: usize, cout: usize, height: usize, width: usize, isa: Isa) -> Plan {
        let row = width + 2;
        let plane = (height + 2) * row;
        let wide = (height * row).next_multiple_of(tile_pixels(isa));
        let taps = std::array::from_fn(|t| (t / K) * row + t % K);
        // The last tile of the last channel reads up to wide - 1 + the largest tap offset.
        let padded_len = cin.saturating_sub(1) * plane + wide + taps[TAPS - 1];
        Plan { cin, cout, height, width, row, plane, wide, padded_len, taps }
    }

    /// Scratch for one sample: (padded input, wide output). Zeroed once: [`Plan::pad`] and
    /// [`Plan::widen`] only write real pixels, so the borders stay zero across samples.
    fn scratch(&self, out_rows: usize) -> (Vec<f32>, Vec<f32>) {
        (vec![0.0; self.padded_len.max(self.cin * self.plane)], vec![0.0; out_rows * self.wide])
    }

    /// One sample `[cin, H, W]` into the interior of its padded copy.
    fn pad(&self, x: &[f32], padded: &mut [f32]) {
        let (h, w) = (self.height, self.width);
        for (x, padded) in x.chunks_exact(h * w).zip(padded.chunks_exact_mut(self.plane)) {
            for (y, line) in x.chunks_exact(w).enumerate() {
                padded[(y + 1) * self.row + 1..][..w].copy_from_slice(line);
            }
        }
    }

    /// `[C, H, W]` onto the wide rows (`[C, wide]`, the extra columns left as they are: zero).
    fn widen(&self, x: &[f32], wide: &mut [f32]) {
        let (h, w) = (self.height, self.width);
        for (x, wide) in x.chunks_exact(h * w).zip(wide.chunks_exact_mut(self.wide)) {
            for (y, line) in x.chunks_exact(w).enumerate() {
                wide[y * self.row..][..w].copy_from_slice(line);
            }
        }
    }

    /// The wide rows `[C, wide]` cropped to `[C, H, W]`.
    fn crop(&self, wide: &[f32], out: &mut [f32]) {
        let (h, w) = (self.height, self.width);
        for (out, wide) in out.chunks_exact_mut(h * w).zip(wide.chunks_exact(self.wide)) {
            for (y, line) in out.chunks_exact_mut(w).enumerate() {
                line.copy_from_slice(&wide[y * self.row..][..w]);
            }
        }
    }
}

/// Weights `[cout, cin, 3, 3]` in the order the forward tile reads them:
/// `[cout / 4][cin][tap][4]`, zero for channels past `cout`.
pub fn pack_forward(cout: usize, cin: usize, w: &[f32]) -> Vec<f32> {
    let blocks = cout.div_ceil(CB);
    let mut packed = vec![0.0; blocks * cin * TAPS * CB];
    for co in 0..cout {
        for ci in 0..cin {
            for t in 0..TAPS {
                packed[((co / CB * cin + ci) * TAPS + t) * CB + co % CB] = w[(co * cin + ci) * TAPS + t];
            }
        }
    }
    packed
}

/// Weights `[cout, cin, 3, 3]` transposed and flipped for the backward to the input (a
/// convolution from `cout` to `cin` channels): `[cin / 4][cout][tap][4]` holding
/// `w[co, ci, 8 - tap]`.
pub fn pack_backward_input(cout: usize, cin: usize, w: &[f32]) -> Vec<f32> {
    let blocks = cin.div_ceil(CB);
    let mut packed = vec![0.0; blocks * cout * TAPS * CB];
    for co in 0..cout {
        for ci in 0..cin {
            for t in 0..TAPS {
                packed[((ci / CB * cout + co) * TAPS + t) * CB + ci % CB] = w[(co * cin + ci) * TAPS + TAPS - 1 - t];
            }
        }
    }
    packed
}

/// Every output tile of one sample: `wide[co, p] = bias[co] + sum over ci, taps of
/// w[co, ci, tap] padded[ci, p + taps[tap]]`.
#[inline(always)]
fn convolve_sample<const FMA: bool, const PX: usize>(
    plan: &Plan,
    padded: &[f32],
    packed: &[f32],
    bias: Option<&[f32]>,
    wide: &mut [f32],
) {
    let (cin, cout) = (plan.cin, plan.cout);
    let block_len = cin * TAPS * CB;
    assert!(padded.len() >= plan.padded_len && wide.len() >= cout * plan.wide);
    assert!(packed.len() >= cout.div_ceil(CB) * block_len && plan.wide.is_multiple_of(PX));
    for (block, weights) in packed.chunks_exact(block_len).take(cout.div_ceil(CB)).enumerate() {
        let channels = (cout - block * CB).min(CB);
        let mut init = [0.0f32; CB];
        if let Some(bias) = bias {
            init[..channels].copy_from_slice(&bias[block * CB..block * CB + channels]);
        }
        for p in (0..plan.wide).step_by(PX) {
            let mut acc = [[0.0f32; PX]; CB];
            for (acc, &b) in acc.iter_mut().zip(&init) {
                *acc = [b; PX];
            }
            // Raw reads: slice checks on every tap cost as many instructions as the FMAs.
            // SAFETY: for channel ci < cin, tap offset o and lane l < PX, the read is at
            // ci plane + p + o + l <= (cin - 1) plane + wide - 1 + taps[8] < padded_len <=
            // padded.len(), and the weights at most cin 9 CB past the block's start, inside
            // `weights` (both asserted above).
            unsafe {
                let mut w = weights.as_ptr();
                for ci in 0..cin {
                    let x = padded.as_ptr().add(ci * plan.plane + p);
                    for &offset in &plan.taps {
                        let v = x.add(offset).cast::<[f32; PX]>().read_unaligned();
                        let wv = w.cast::<[f32; CB]>().read_unaligned();
                        for (acc, &w) in acc.iter_mut().zip(&wv) {
                            madd_broadcast::<FMA, PX>(w, &v, acc);
                        }
                        w = w.add(CB);
                    }
                }
            }
            for (c, acc) in acc.iter().enumerate().take(channels) {
                wide[(block * CB + c) * plan.wide + p..][..PX].copy_from_slice(acc);
            }
        }
    }
}

/// [`convolve_sample`] in the copy compiled for `isa`.
fn convolve(isa: Isa, plan: &Plan, padded: &[f32], packed: &[f32], bias: Option<&[f32]>, wide: &mut [f32]) {
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: Avx2Fma is only chosen where the processor has both (Isa::or_portable).
        Isa::Avx2Fma => unsafe { convolve_avx2(plan, padded, packed, bias, wide) },
        _ => convolve_sample::<false, 8>(plan, padded, packed, bias, wide),
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn convolve_avx2(plan: &Plan, padded: &[f32], packed: &[f32], bias: Option<&[f32]>, wide: &mut [f32]) {
    convolve_sample::<true, 16>(plan, padded, packed, bias, wide)
}

/// y `[N, cout, H, W]` = conv3x3(x `[N, cin, H, W]`, w) + b.
#[allow(clippy::too_many_arguments)]
pub fn forward(
    isa: Isa,
    n: usize,
    cin: usize,
    cout: usize,
    h: usize,
    w: usize,
    x: &[f32],
    wt: &[f32],
    b: &[f32],
    y: &mut [f32],
) {
    let isa = isa.or_portable();
    let plan = Plan::new(cin, cout, h, w, isa);
    let packed = pack_forward(cout, cin, wt);
    assert!(x.len() == n * cin * h * w && y.len() == n * cout * h * w && b.len() == cout);
    if n == 0 || h * w == 0 {
        return;
    }
    y.par_chunks_exact_mut(cout * h * w).zip(x.par_chunks_exact(cin * h * w)).for_each_init(
        || plan.scratch(cout),
        |(padded, wide), (y, x)| {
            plan.pad(x, padded);
            convolve(isa, &plan, padded, &packed, Some(b), wide);
            plan.crop(wide, y);
        },
    );
}

/// dx `[N, cin, H, W]` from dy `[N, cout, H, W]`: the transposed convolution.
#[allow(clippy::too_many_arguments)]
pub fn backward_input(
    isa: Isa,
    n: usize,
    cin: usize,
    cout: usize,
    h: usize,
    w: usize,
    dy: &[f32],
    wt: &[f32],
    dx: &mut [f32],
) {
    let isa = isa.or_portable();
    let plan = Plan::new(cout, cin, h, w, isa);
    let packed = pack_backward_input(cout, cin, wt);
    assert!(dx.len() == n * cin * h * w && dy.len() == n * cout * h * w);
    if n == 0 || h * w == 0 {
        return;
    }
    dx.par_chunks_exact_mut(cin * h * w).zip(dy.par_chunks_exact(cout * h * w)).for_each_init(
        || plan.scratch(cin),
        |(padded, wide), (dx, dy)| {
            plan.pad(dy, padded);
            convolve(isa, &plan, padded, &packed, None, wide);
            plan.crop(wide, dx);
        },
    );
}

/// Lanes of the weight-gradient accumulators: 4 channels x 3 taps x 8 lanes are 12 AVX
/// registers. The baseline copy on x86-64 uses 8 lanes too (two SSE registers each, some
/// spilled): with 4, LLVM vectorized across the 4 channels instead and shuffled every operand,
/// 5x slower. In wasm the multiply-adds are simd128 intrinsics (`madd_lanes`), which LLVM does
/// not rearrange: there 4 lanes, 12 registers, fit V8's 16 on x86-64, where 8 spilled half.
fn weight_lanes(isa: Isa) -> usize {
    match isa {
        Isa::Avx2Fma => 8,
        Isa::Portable => PORTABLE_WEIGHT_LANES,
    }
}

/// The baseline copy's weight-gradient lanes (see [`weight_lanes`]).
const PORTABLE_WEIGHT_LANES: usize = if cfg!(target_arch = "wasm32") { 4 } else { 8 };

/// One sample's weight gradient added into `dw` `[cout, cin, 3, 3]`: dy on the wide rows
/// `[cout rounded up to 4, wide]` (zero outside real pixels, so the wide columns add nothing),
/// x padded.
#[inline(always)]
fn weight_sample<const FMA: bool, const L: usize>(plan: &Plan, padded: &[f32], dy_wide: &[f32], dw: &mut [f32]) {
    let (cin, cout, wide) = (plan.cin, plan.cout, plan.wide);
    assert!(padded.len() >= plan.padded_len && dy_wide.len() >= cout.div_ceil(CB) * CB * wide);
    assert!(dw.len() == cout * cin * TAPS && wide.is_multiple_of(L));
    for block in 0..cout.div_ceil(CB) {
        let dy = &dy_wide[block * CB * wide..(block + 1) * CB * wide];
        let channels = (cout - block * CB).min(CB);
        for ci in 0..cin {
            // One tap column kx at a time, its three rows ky in registers: their inputs lie a
            // (run-time) row apart, so LLVM does not try to build them from one another's
            // loads with shuffles, as it did for three taps one pixel apart.
            for kx in 0..K {
                let x = &padded[ci * plan.plane + kx..][..wide + (K - 1) * plan.row];
                let mut acc = [[[0.0f32; L]; K]; CB];
                // SAFETY: p + ky row + L - 1 <= wide - 1 + 2 row < x.len(), and
                // c wide + p + L - 1 < CB wide = dy.len() (the slices are checked).
                unsafe {
                    for p in (0..wide).step_by(L) {
                        let v: [[f32; L]; K] = std::array::from_fn(|ky| {
                            x.as_ptr().add(p + ky * plan.row).cast::<[f32; L]>().read_unaligned()
                        });
                        for (c, acc) in acc.iter_mut().enumerate() {
                            let d = dy.as_ptr().add(c * wide + p).cast::<[f32; L]>().read_unaligned();
                            for (acc, v) in acc.iter_mut().zip(&v) {
                                madd_lanes::<FMA, L>(&d, v, acc);
                            }
                        }
                    }
                }
                for (c, acc) in acc.iter().enumerate().take(channels) {
                    for (ky, lanes) in acc.iter().enumerate() {
                        dw[((block * CB + c) * cin + ci) * TAPS + ky * K + kx] += lanes.iter().sum::<f32>();
                    }
                }
            }
        }
    }
}

/// [`weight_sample`] in the copy compiled for `isa`.
fn weight(isa: Isa, plan: &Plan, padded: &[f32], dy_wide: &[f32], dw: &mut [f32]) {
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: Avx2Fma is only chosen where the processor has both (Isa::or_portable).
        Isa::Avx2Fma => unsafe { weight_avx2(plan, padded, dy_wide, dw) },
        _ => weight_sample::<false, PORTABLE_WEIGHT_LANES>(plan, padded, dy_wide, dw),
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn weight_avx2(plan: &Plan, padded: &[f32], dy_wide: &[f32], dw: &mut [f32]) {
    weight_sample::<true, 8>(plan, padded, dy_wide, dw)
}

/// The weight gradient splits the batch into this many groups of consecutive samples, each
/// summed into its own partial by one task; the partials are then added in group order. A fixed
/// count (not one per thread) keeps the result independent of the machine's thread count.
const WEIGHT_GRAD_GROUPS: usize = 16;

/// dw `[cout, cin, 3, 3]` from dy `[N, cout, H, W]` and x `[N, cin, H, W]`.
#[allow(clippy::too_many_arguments)]
pub fn backward_weight(
    isa: Isa,
    n: usize,
    cin: usize,
    cout: usize,
    h: usize,
    w: usize,
    dy: &[f32],
    x: &[f32],
    dw: &mut [f32],
) {
    let isa = isa.or_portable();
    assert_eq!(tile_pixels(isa) % weight_lanes(isa), 0);
    let plan = Plan::new(cin, cout, h, w, isa);
    assert!(x.len() == n * cin * h * w && dy.len() == n * cout * h * w && dw.len() == cout * cin * TAPS);
    dw.fill(0.0);
    if n == 0 || h * w == 0 {
        return;
    }
    let per_group = n.div_ceil(WEIGHT_GRAD_GROUPS);
    let partials: Vec<Vec<f32>> = (0..n.div_ceil(per_group))
        .into_par_iter()
        .map(|group| {
            let mut partial = vec![0.0; dw.len()];
            let (mut padded, mut dy_wide) = plan.scratch(cout.next_multiple_of(CB));
            for s in group * per_group..((group + 1) * per_group).min(n) {
                plan.pad(&x[s * cin * h * w..(s + 1) * cin * h * w], &mut padded);
                plan.widen(&dy[s * cout * h * w..(s + 1) * cout * h * w], &mut dy_wide);
                weight(isa, &plan, &padded, &dy_wide, &mut partial);
            }
            partial
        })
        .collect();
    for partial in &partials {
        dw.iter_mut().zip(partial).for_each(|(d, p)| *d += p);
    }
}
