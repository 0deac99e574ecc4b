//! CPU twins of `../gpu/elementwise.rs`.

use rayon::prelude::*;

pub fn add(a: &[f32], b: &[f32], out: &mut [f32]) {
    assert!(a.len() == b.len() && a.len() == out.len());
    out.par_iter_mut().zip(a.par_iter().zip(b)).for_each(|(o, (a, b))| *o = a + b);
}

pub fn silu(_x: &[f32], _y: &mut [f32]) {
    todo!()
}
pub fn silu_backward(_x: &[f32], _dy: &[f32], _dx: &mut [f32]) {
    todo!()
}
/// x `[planes, h, w]` -> y `[planes, 2h, 2w]`.
pub fn upsample2x(_planes: usize, _h: usize, _w: usize, _x: &[f32], _y: &mut [f32]) {
    todo!()
}
/// dy `[planes, 2h, 2w]` -> dx `[planes, h, w]`.
pub fn upsample2x_backward(_planes: usize, _h: usize, _w: usize, _dy: &[f32], _dx: &mut [f32]) {
    todo!()
}
#[allow(clippy::too_many_arguments)]
pub fn copy_channels(
    _n: usize,
    _s: usize,
    _src_channels: usize,
    _src_start: usize,
    _dst_channels: usize,
    _dst_start: usize,
    _count: usize,
    _accumulate: bool,
    _src: &[f32],
    _dst: &mut [f32],
) {
    todo!()
}
/// x `[planes, s]` plus e `[planes]`.
pub fn add_channel_bias(_planes: usize, _s: usize, _x: &[f32], _e: &[f32], _y: &mut [f32]) {
    todo!()
}
pub fn scale_add(_n: usize, _alpha: &[f32], _x: &[f32], _beta: &[f32], _y: &[f32], _out: &mut [f32]) {
    todo!()
}
pub fn sinusoidal_embedding(_c: &[f32], _half: usize, _out: &mut [f32]) {
    todo!()
}
