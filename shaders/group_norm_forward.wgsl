// GroupNorm forward with an optional fused SiLU: one workgroup per (sample, group).
//
// The channels of one group of one sample are a contiguous run of cpg * s values, so the
// workgroup strides over that run three times: sum for the mean, sum of squared deviations for
// the variance (two passes rather than E[x^2] - E[x]^2, which cancels badly when the mean is
// large against the spread), then the normalised, affine, optionally SiLU'd output.

struct Params {
    // Number of (sample, group) pairs: the workgroups that do work.
    count: u32,
    groups: u32,
    // Channels per group.
    cpg: u32,
    // Spatial size H * W.
    s: u32,
    // 1: apply SiLU to the output.
    silu: u32,
    eps: f32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> gamma: array<f32>;
@group(0) @binding(3) var<storage, read> beta: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;
@group(0) @binding(5) var<storage, read_write> stats: array<f32>;

// What workgroup_sum (workgroup_sum.wgsl, appended) adds.
alias Partial = f32;

@compute @workgroup_size(256)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    // Workgroup-uniform, so returning here keeps the barriers below in uniform control flow.
    let ng = wid.x + wid.y * nwg.x;
    if (ng >= params.count) {
        return;
    }
    let len = params.cpg * params.s;
    // Groups of one sample are consecutive, so (sample, group) pair ng starts at ng * len.
    let base = ng * len;
    let inv_len = 1.0 / f32(len);

    var acc = 0.0;
    for (var j = lid; j < len; j += 256u) {
        acc += x[base + j];
    }
    let mean = workgroup_sum(acc, lid) * inv_len;

    acc = 0.0;
    for (var j = lid; j < len; j += 256u) {
        let d = x[base + j] - mean;
        acc += d * d;
    }
    let rstd = inverseSqrt(workgroup_sum(acc, lid) * inv_len + params.eps);

    let c0 = (ng % params.groups) * params.cpg;
    for (var j = lid; j < len; j += 256u) {
        let c = c0 + j / params.s;
        var v = (x[base + j] - mean) * rstd * gamma[c] + beta[c];
        if (params.silu != 0u) {
            v = silu(v);
        }
        y[base + j] = v;
    }
    if (lid == 0u) {
        stats[2u * ng] = mean;
        stats[2u * ng + 1u] = rstd;
    }
}
