//! CPU twins of `../gpu/random.rs`, on top of `crate::random`.

use crate::backend::RandomKey;

pub fn random_uniform(_key: RandomKey, _out: &mut [f32]) {
    todo!()
}
pub fn random_normal(_key: RandomKey, _out: &mut [f32]) {
    todo!()
}
pub fn random_index(_key: RandomKey, _bound: u32, _out: &mut [f32]) {
    todo!()
}
pub fn gather_rows(_bytes: &[u8], _row_len: usize, _index: &[f32], _out: &mut [f32]) {
    todo!()
}
