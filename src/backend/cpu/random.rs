//! CPU twins of `../gpu/random.rs`, on top of `crate::random`.

use rayon::prelude::*;

use crate::backend::RandomKey;
use crate::random;

pub fn random_uniform(key: RandomKey, out: &mut [f32]) {
    out.par_iter_mut().enumerate().for_each(|(i, o)| *o = random::uniform(key, i as u32));
}

pub fn random_normal(key: RandomKey, out: &mut [f32]) {
    out.par_iter_mut().enumerate().for_each(|(i, o)| *o = random::normal(key, i as u32));
}

pub fn random_index(key: RandomKey, bound: u32, out: &mut [f32]) {
    assert!(bound > 0, "random_index: bound must be positive");
    out.par_iter_mut().enumerate().for_each(|(i, o)| *o = random::index_below(key, i as u32, bound) as f32);
}

pub fn gather_rows(bytes: &[u8], row_len: usize, index: &[f32], out: &mut [f32]) {
    assert_eq!(out.len(), index.len() * row_len, "gather_rows: out must be [{}, {row_len}]", index.len());
    let rows = bytes.len() / row_len;
    for (b, &r) in index.iter().enumerate() {
        let row = r as usize;
        assert!(row < rows && row as f32 == r, "gather_rows: index {r} is not a row of a {rows}-row dataset");
        let src = &bytes[row * row_len..(row + 1) * row_len];
        for (o, &byte) in out[b * row_len..(b + 1) * row_len].iter_mut().zip(src) {
            // (2 byte - 255) * (1/255): the shader's expression, so both give the same float.
            *o = (2.0 * byte as f32 - 255.0) * (1.0 / 255.0);
        }
    }
}
