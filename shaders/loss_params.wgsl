// ---- loss_params: the parameters of loss_forward and loss_backward (appended to each), --------
// mirrored by `LossParams` in src/backend/gpu/loss.rs.

struct Params {
    // Samples N and values per sample D.
    n: u32,
    d: u32,
    // 0 = L2 (mean of r^2), 1 = L1 (mean of |r|), 2 = pseudo-Huber.
    metric: u32,
    // The pseudo-Huber constant.
    c: f32,
}

@group(0) @binding(0) var<uniform> params: Params;
