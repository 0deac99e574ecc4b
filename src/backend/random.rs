//! Seeded random draws and the minibatch gather from a u8 dataset (implemented in
//! `cpu/random.rs` and `gpu/random.rs`, both over the Philox of `crate::random`).

use super::{BTensor, Memory, RandomKey};

/// Random numbers keyed by a [`RandomKey`], and data.
pub trait RandomOps: Memory {
    /// Uniform values in [0, 1).
    fn random_uniform(&self, key: RandomKey, out: &BTensor<Self>);
    /// Standard normal values (Box-Muller).
    fn random_normal(&self, key: RandomKey, out: &BTensor<Self>);
    /// Integers uniform in [0, bound), stored as f32 (exact below 2^24).
    fn random_index(&self, key: RandomKey, bound: u32, out: &BTensor<Self>);
    /// Rows `index[b]` of a u8 dataset of `row_len`-byte rows, scaled to [-1, 1], into
    /// out `[B, row_len]`.
    fn gather_rows(&self, data: &Self::Bytes, row_len: usize, index: &BTensor<Self>, out: &BTensor<Self>);
}
