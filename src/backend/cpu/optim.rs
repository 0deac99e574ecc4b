//! CPU twins of `../gpu/optim.rs`.

use crate::backend::AdamStep;

pub fn adam(_step: &AdamStep, _params: &mut [f32], _grad: &[f32], _m: &mut [f32], _v: &mut [f32], _grad_sumsq: f32) {
    todo!()
}
pub fn ema(_mu: f32, _avg: &mut [f32], _x: &[f32]) {
    todo!()
}
