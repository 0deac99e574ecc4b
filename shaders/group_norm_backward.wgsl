// GroupNorm backward (through the optional fused SiLU), two entry points:
// - `input_grad`, one workgroup per (sample, group): dx;
// - `affine_grad`, one workgroup per channel: dgamma and dbeta.
// Both recompute xhat = (x - mean) * rstd from the saved stats and a = gamma * xhat + beta, and
// take da = dy * silu'(a) (or dy without SiLU), so no intermediate tensor is stored.
//
// With g = da * gamma and means over the group,
//   dx = rstd * (g - mean(g) - xhat * mean(g * xhat)),
//   dgamma[c] = sum over samples and positions of da * xhat,  dbeta[c] = sum of da.

struct Params {
    batch: u32,
    channels: u32,
    groups: u32,
    // Channels per group.
    cpg: u32,
    // Spatial size H * W.
    s: u32,
    // 1: the forward applied SiLU after the affine.
    silu: u32,
}

// Auto layout gives each entry point only the bindings it uses, and the host binds storage
// buffers 1, 2, ... in order. Both entries read 1-5; `input_grad` writes its one output to
// binding 6, `affine_grad` its two to 6 and 7. Binding 6 is therefore one variable with a
// meaning per entry point: declaring two variables at the same binding is only allowed when no
// entry point uses both, which not every WGSL compiler accepts.
@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> dy: array<f32>;
@group(0) @binding(2) var<storage, read> x: array<f32>;
@group(0) @binding(3) var<storage, read> gamma: array<f32>;
@group(0) @binding(4) var<storage, read> beta: array<f32>;
@group(0) @binding(5) var<storage, read> stats: array<f32>;
// dx in `input_grad`, dgamma in `affine_grad`.
@group(0) @binding(6) var<storage, read_write> out6: array<f32>;
// dbeta in `affine_grad`.
@group(0) @binding(7) var<storage, read_write> dbeta: array<f32>;

// Two sums at once through workgroup_sum (workgroup_sum.wgsl, appended).
alias Partial = vec2<f32>;

// da for the value at flat index i of channel c, given its xhat.
fn da(i: u32, c: u32, xhat: f32) -> f32 {
    if (params.silu != 0u) {
        return dy[i] * silu_grad(gamma[c] * xhat + beta[c]);
    }
    return dy[i];
}

@compute @workgroup_size(256)
fn input_grad(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    // Workgroup-uniform, so returning keeps the barriers below in uniform control flow.
    let ng = wid.x + wid.y * nwg.x;
    if (ng >= params.batch * params.groups) {
        return;
    }
    let len = params.cpg * params.s;
    let base = ng * len;
    let c0 = (ng % params.groups) * params.cpg;
    let mean = stats[2u * ng];
    let rstd = stats[2u * ng + 1u];

    // Sums of g and g * xhat over the group.
    var acc = vec2<f32>(0.0);
    for (var j = lid; j < len; j += 256u) {
        let c = c0 + j / params.s;
        let xhat = (x[base + j] - mean) * rstd;
        let g = da(base + j, c, xhat) * gamma[c];
        acc += vec2<f32>(g, g * xhat);
    }
    let means = workgroup_sum(acc, lid) / f32(len);

    for (var j = lid; j < len; j += 256u) {
        let c = c0 + j / params.s;
        let xhat = (x[base + j] - mean) * rstd;
        let g = da(base + j, c, xhat) * gamma[c];
        out6[base + j] = rstd * (g - means.x - xhat * means.y);
    }
}

@compute @workgroup_size(256)
fn affine_grad(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let c = wid.x + wid.y * nwg.x;
    if (c >= params.channels) {
        return;
    }
    let group = c / params.cpg;
    let len = params.batch * params.s;

    // Sums of da * xhat and da over every sample and position of channel c.
    var acc = vec2<f32>(0.0);
    for (var j = lid; j < len; j += 256u) {
        let n = j / params.s;
        let i = (n * params.channels + c) * params.s + j % params.s;
        let ng = n * params.groups + group;
        let xhat = (x[i] - stats[2u * ng]) * stats[2u * ng + 1u];
        let d = da(i, c, xhat);
        acc += vec2<f32>(d * xhat, d);
    }
    let total = workgroup_sum(acc, lid);
    if (lid == 0u) {
        out6[c] = total.x;
        dbeta[c] = total.y;
    }
}
