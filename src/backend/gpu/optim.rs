//! Optimizer kernels over the flat parameter buffer: Adam (with clipping by global norm) and EMA.

use super::{GpuBackend, GpuTensor};
use crate::backend::AdamStep;

pub fn adam(
    _be: &GpuBackend,
    _step: &AdamStep,
    _params: &GpuTensor,
    _grad: &GpuTensor,
    _m: &GpuTensor,
    _v: &GpuTensor,
    _grad_sumsq: &GpuTensor,
) {
    todo!()
}
pub fn ema(_be: &GpuBackend, _mu: f32, _avg: &GpuTensor, _x: &GpuTensor) {
    todo!()
}
