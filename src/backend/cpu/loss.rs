//! CPU twins of `../gpu/loss.rs`.

use crate::backend::Metric;

pub fn loss(
    _metric: Metric,
    _n: usize,
    _pred: &[f32],
    _target: &[f32],
    _weight: &[f32],
    _loss: &mut [f32],
    _stats: &mut [f32],
) {
    todo!()
}
pub fn loss_backward(
    _metric: Metric,
    _n: usize,
    _pred: &[f32],
    _target: &[f32],
    _weight: &[f32],
    _stats: &[f32],
    _dpred: &mut [f32],
) {
    todo!()
}
pub fn sum(_x: &[f32], _square: bool, _scale: f32) -> f32 {
    todo!()
}
