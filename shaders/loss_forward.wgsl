// Per-sample weighted distance of a consistency loss: loss[n] = weight[n] * d(pred[n], target[n])
// over the D values of sample n, plus stats[n] = ||pred[n] - target[n]||^2, which the pseudo-Huber
// backward needs. One workgroup per sample: each thread sums a strided slice of the sample, then
// workgroup_sum adds the 256 partial sums (shorter addition chains than one loop).
// Appended: loss_params.wgsl (the parameters) and workgroup_sum.wgsl.

@group(0) @binding(1) var<storage, read> pred: array<f32>;
@group(0) @binding(2) var<storage, read> tgt: array<f32>;
@group(0) @binding(3) var<storage, read> weight: array<f32>;
@group(0) @binding(4) var<storage, read_write> loss: array<f32>;
@group(0) @binding(5) var<storage, read_write> stats: array<f32>;

// (sum of squares, sum of absolute values) of the residual.
alias Partial = vec2<f32>;

@compute @workgroup_size(256)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    // Samples beyond 65535 spill into y (see grid() on the host); the test is uniform across
    // the workgroup, so returning here keeps the barriers below in uniform control flow.
    let sample = wid.x + wid.y * groups.x;
    if (sample >= params.n) {
        return;
    }
    let base = sample * params.d;
    var sq = 0.0;
    var ab = 0.0;
    for (var i = lid; i < params.d; i += 256u) {
        let r = pred[base + i] - tgt[base + i];
        sq += r * r;
        ab += abs(r);
    }
    let sums = workgroup_sum(vec2<f32>(sq, ab), lid);
    if (lid == 0u) {
        let s = sums.x;
        var dist: f32;
        if (params.metric == 0u) {
            dist = s / f32(params.d);
        } else if (params.metric == 1u) {
            dist = sums.y / f32(params.d);
        } else {
            // sqrt(s + c^2) - c written as s / (sqrt(s + c^2) + c): the same value without the
            // cancellation that loses most digits once s is small next to c^2 (a well-trained
            // model). The select only matters for c = 0 and s = 0, where the distance is 0.
            let c = params.c;
            let den = sqrt(s + c * c) + c;
            dist = select(0.0, s / den, den > 0.0);
        }
        loss[sample] = weight[sample] * dist;
        stats[sample] = s;
    }
}
