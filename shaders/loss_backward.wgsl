// Gradient of mean_n loss[n] with respect to pred (see loss_forward.wgsl), elementwise:
// dpred = (weight[n] / N) * d'(r) with r = pred - target and
//   L2: 2 r / D,   L1: sign(r) / D (0 at r = 0),   pseudo-Huber: r / sqrt(||r_n||^2 + c^2),
// where ||r_n||^2 comes from the forward pass (stats), so no second reduction is needed.
// Parameters: loss_params.wgsl, appended.

@group(0) @binding(1) var<storage, read> pred: array<f32>;
@group(0) @binding(2) var<storage, read> tgt: array<f32>;
@group(0) @binding(3) var<storage, read> weight: array<f32>;
@group(0) @binding(4) var<storage, read> stats: array<f32>;
@group(0) @binding(5) var<storage, read_write> dpred: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = gid.x + gid.y * groups.x * 256u;
    if (i >= params.n * params.d) {
        return;
    }
    let sample = i / params.d;
    let r = pred[i] - tgt[i];
    var g: f32;
    if (params.metric == 0u) {
        g = 2.0 * r / f32(params.d);
    } else if (params.metric == 1u) {
        g = sign(r) / f32(params.d);
    } else {
        // Guarded like the forward: only c = 0 with pred == target gives a zero denominator.
        let den = sqrt(stats[sample] + params.c * params.c);
        g = select(0.0, r / den, den > 0.0);
    }
    dpred[i] = (weight[sample] / f32(params.n)) * g;
}
