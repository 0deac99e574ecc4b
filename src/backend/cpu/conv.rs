//! CPU twins of `../gpu/conv.rs`: convolution via im2col and sgemm, linear layers, channel sums.

use crate::backend::Conv2d;

pub fn conv2d(_g: &Conv2d, _x: &[f32], _w: &[f32], _b: &[f32], _y: &mut [f32]) {
    todo!()
}
pub fn conv2d_backward_input(_g: &Conv2d, _dy: &[f32], _w: &[f32], _dx: &mut [f32]) {
    todo!()
}
pub fn conv2d_backward_weight(_g: &Conv2d, _dy: &[f32], _x: &[f32], _dw: &mut [f32]) {
    todo!()
}
/// x `[n, i]`, w `[o, i]`, b `[o]` -> y `[n, o]`.
#[allow(clippy::too_many_arguments)]
pub fn linear(_n: usize, _i: usize, _o: usize, _x: &[f32], _w: &[f32], _b: &[f32], _y: &mut [f32]) {
    todo!()
}
pub fn linear_backward_input(_n: usize, _i: usize, _o: usize, _dy: &[f32], _w: &[f32], _dx: &mut [f32]) {
    todo!()
}
pub fn linear_backward_weight(_n: usize, _i: usize, _o: usize, _dy: &[f32], _x: &[f32], _dw: &mut [f32]) {
    todo!()
}
pub fn channel_sum(_n: usize, _c: usize, _s: usize, _x: &[f32], _out: &mut [f32], _per_sample: bool) {
    todo!()
}
