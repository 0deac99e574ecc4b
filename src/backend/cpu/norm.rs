//! CPU twin of `../gpu/norm.rs`.

#[allow(clippy::too_many_arguments)]
pub fn group_norm(
    _n: usize,
    _c: usize,
    _s: usize,
    _groups: usize,
    _silu: bool,
    _x: &[f32],
    _gamma: &[f32],
    _beta: &[f32],
    _y: &mut [f32],
    _stats: &mut [f32],
) {
    todo!()
}
#[allow(clippy::too_many_arguments)]
pub fn group_norm_backward(
    _n: usize,
    _c: usize,
    _s: usize,
    _groups: usize,
    _silu: bool,
    _dy: &[f32],
    _x: &[f32],
    _gamma: &[f32],
    _beta: &[f32],
    _stats: &[f32],
    _dx: &mut [f32],
    _dgamma: &mut [f32],
    _dbeta: &mut [f32],
) {
    todo!()
}
