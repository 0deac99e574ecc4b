//! Group normalisation (with an optional fused SiLU) and its backward pass.

use super::{GpuBackend, GpuTensor};

#[allow(clippy::too_many_arguments)]
pub fn group_norm(
    _be: &GpuBackend,
    _groups: usize,
    _silu: bool,
    _x: &GpuTensor,
    _gamma: &GpuTensor,
    _beta: &GpuTensor,
    _y: &GpuTensor,
    _stats: &GpuTensor,
) {
    todo!()
}
#[allow(clippy::too_many_arguments)]
pub fn group_norm_backward(
    _be: &GpuBackend,
    _groups: usize,
    _silu: bool,
    _dy: &GpuTensor,
    _x: &GpuTensor,
    _gamma: &GpuTensor,
    _beta: &GpuTensor,
    _stats: &GpuTensor,
    _dx: &GpuTensor,
    _dgamma: &GpuTensor,
    _dbeta: &GpuTensor,
) {
    todo!()
}
