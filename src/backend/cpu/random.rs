//! CPU twins of `../gpu/random.rs`, on top of `crate::random`.

use std::rc::Rc;

use rayon::prelude::*;

use super::{data, data_mut, CpuBackend, CpuTensor};
use crate::backend::{RandomKey, RandomOps};
use crate::random;

impl RandomOps for CpuBackend {
    fn random_uniform(&self, key: RandomKey, out: &CpuTensor) {
        data_mut(out).par_iter_mut().enumerate().for_each(|(i, o)| *o = random::uniform(key, i as u32));
    }

    fn random_normal(&self, key: RandomKey, out: &CpuTensor) {
        data_mut(out).par_iter_mut().enumerate().for_each(|(i, o)| *o = random::normal(key, i as u32));
    }

    fn random_index(&self, key: RandomKey, bound: u32, out: &CpuTensor) {
        assert!(bound > 0, "random_index: bound must be positive");
        data_mut(out)
            .par_iter_mut()
            .enumerate()
            .for_each(|(i, o)| *o = random::index_below(key, i as u32, bound) as f32);
    }

    fn gather_rows(&self, bytes: &Rc<Vec<u8>>, row_len: usize, index: &CpuTensor, out: &CpuTensor) {
        let (index, mut out) = (data(index), data_mut(out));
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
}
