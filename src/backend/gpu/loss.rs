//! Per-sample weighted losses, their gradients, and sum reductions.

use super::{GpuBackend, GpuTensor};
use crate::backend::Metric;

pub fn loss(
    _be: &GpuBackend,
    _metric: Metric,
    _pred: &GpuTensor,
    _target: &GpuTensor,
    _weight: &GpuTensor,
    _loss: &GpuTensor,
    _stats: &GpuTensor,
) {
    todo!()
}
pub fn loss_backward(
    _be: &GpuBackend,
    _metric: Metric,
    _pred: &GpuTensor,
    _target: &GpuTensor,
    _weight: &GpuTensor,
    _stats: &GpuTensor,
    _dpred: &GpuTensor,
) {
    todo!()
}
pub fn sum(_be: &GpuBackend, _x: &GpuTensor, _out: &GpuTensor, _square: bool, _scale: f32) {
    todo!()
}
