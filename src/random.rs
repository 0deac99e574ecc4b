//! Counter-based random numbers: Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy
//! as 1, 2, 3", SC 2011). Each value is a pure function of (seed, step, stream, index), so GPU
//! threads draw independently, a resumed run draws the same noise as an uninterrupted one, and
//! the CPU backend reproduces the GPU's numbers. `shaders/random.wgsl` is the GPU twin.

/// Where a random draw comes from: the same (seed, step, stream, index) always gives the same
/// number on every backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RandomKey {
    pub seed: u64,
    pub step: u32,
    /// Separates independent draws within one step (noise, minibatch indices, ...).
    pub stream: u32,
}

const M0: u32 = 0xD251_1F53;
const M1: u32 = 0xCD9E_8D57;
const W0: u32 = 0x9E37_79B9;
const W1: u32 = 0xBB67_AE85;

fn mulhilo(a: u32, b: u32) -> (u32, u32) {
    let p = a as u64 * b as u64;
    ((p >> 32) as u32, p as u32)
}

/// Ten Philox rounds of `counter` under `key`.
pub fn philox4x32(mut counter: [u32; 4], mut key: [u32; 2]) -> [u32; 4] {
    for round in 0..10 {
        if round > 0 {
            key[0] = key[0].wrapping_add(W0);
            key[1] = key[1].wrapping_add(W1);
        }
        let (hi0, lo0) = mulhilo(M0, counter[0]);
        let (hi1, lo1) = mulhilo(M1, counter[2]);
        counter = [hi1 ^ counter[1] ^ key[0], lo1, hi0 ^ counter[3] ^ key[1], lo0];
    }
    counter
}

/// The four random words of element `index` under `key`.
pub fn words(key: RandomKey, index: u32) -> [u32; 4] {
    philox4x32([index, key.step, key.stream, 0], [key.seed as u32, (key.seed >> 32) as u32])
}

/// 24 random bits as a float in [0, 1).
pub fn unit(word: u32) -> f32 {
    (word >> 8) as f32 * (1.0 / 16_777_216.0)
}

pub fn uniform(key: RandomKey, index: u32) -> f32 {
    unit(words(key, index)[0])
}

/// Box-Muller on the first two words; u1 is kept in (0, 1] so the log is finite.
pub fn normal(key: RandomKey, index: u32) -> f32 {
    let w = words(key, index);
    let u1 = ((w[0] >> 8) + 1) as f32 * (1.0 / 16_777_216.0);
    let u2 = unit(w[1]);
    (-2.0 * u1.ln()).sqrt() * (std::f32::consts::TAU * u2).cos()
}

/// An integer uniform in [0, bound): the high word of `word * bound` (Lemire's multiply-shift).
pub fn index_below(key: RandomKey, index: u32, bound: u32) -> u32 {
    mulhilo(words(key, index)[0], bound).0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn philox_matches_the_published_known_answers() {
        // Known-answer vectors of Random123 (kat_vectors, philox4x32_10).
        assert_eq!(philox4x32([0, 0, 0, 0], [0, 0]), [0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8]);
        assert_eq!(philox4x32([0xffffffff; 4], [0xffffffff; 2]), [0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd]);
        assert_eq!(
            philox4x32([0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344], [0xa4093822, 0x299f31d0]),
            [0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1]
        );
    }

    /// The high word of a 32 x 32-bit product from 16-bit halves, as `shaders/random.wgsl`
    /// computes it (WGSL has no u64).
    fn mulhi_by_halves(a: u32, b: u32) -> u32 {
        let (a0, a1, b0, b1) = (a & 0xffff, a >> 16, b & 0xffff, b >> 16);
        let (p00, p01, p10, p11) = (a0 * b0, a0 * b1, a1 * b0, a1 * b1);
        let mid = (p00 >> 16) + (p01 & 0xffff) + (p10 & 0xffff);
        p11 + (p01 >> 16) + (p10 >> 16) + (mid >> 16)
    }

    #[test]
    fn the_shaders_mulhi_by_halves_equals_the_u64_product() {
        let edges = [0u32, 1, 0xffff, 0x1_0000, 0x1_ffff, 0x8000_0000, 0xffff_0000, 0xffff_ffff, M0, M1];
        for &a in &edges {
            for &b in &edges {
                assert_eq!(mulhi_by_halves(a, b), mulhilo(a, b).0, "{a:#x} * {b:#x}");
            }
        }
        // Philox's own words as operands: a million varied pairs.
        for i in 0..250_000u32 {
            let w = philox4x32([i, 0, 0, 0], [1, 2]);
            for (a, b) in [(w[0], w[1]), (w[2], w[3]), (M0, w[0]), (w[1], M1)] {
                assert_eq!(mulhi_by_halves(a, b), mulhilo(a, b).0, "{a:#x} * {b:#x}");
            }
        }
    }
}
