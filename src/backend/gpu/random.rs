//! Counter-based random numbers (`shaders/random.wgsl`, twin of `src/random.rs`) and the
//! minibatch gather from a u8 dataset.

use super::{GpuBackend, GpuBytes, GpuTensor};
use crate::backend::RandomKey;

pub fn random_uniform(_be: &GpuBackend, _key: RandomKey, _out: &GpuTensor) {
    todo!()
}
pub fn random_normal(_be: &GpuBackend, _key: RandomKey, _out: &GpuTensor) {
    todo!()
}
pub fn random_index(_be: &GpuBackend, _key: RandomKey, _bound: u32, _out: &GpuTensor) {
    todo!()
}
pub fn gather_rows(_be: &GpuBackend, _data: &GpuBytes, _row_len: usize, _index: &GpuTensor, _out: &GpuTensor) {
    todo!()
}
