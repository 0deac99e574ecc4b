// One Adam step with bias correction over the flat parameter buffer, with the gradient clipped to
// a global L2 norm. grad_sumsq[0] = ||grad||^2 was reduced on the GPU just before, so clipping
// needs no round trip to the CPU. A non-finite norm (a NaN or Inf anywhere in the gradient)
// skips the step entirely: params, m and v stay as they were, and training can recover.

struct Params {
    len: u32,
    lr: f32,
    beta1: f32,
    beta2: f32,
    eps: f32,
    // 1 - beta1^t and 1 - beta2^t, computed on the host in f64 (see optim.rs).
    bias1: f32,
    bias2: f32,
    // 0 disables clipping.
    max_grad_norm: f32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read_write> theta: array<f32>;
@group(0) @binding(2) var<storage, read> grad: array<f32>;
@group(0) @binding(3) var<storage, read_write> m: array<f32>;
@group(0) @binding(4) var<storage, read_write> v: array<f32>;
@group(0) @binding(5) var<storage, read> grad_sumsq: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = gid.x + gid.y * groups.x * 256u;
    if (i >= params.len) {
        return;
    }
    let sumsq = grad_sumsq[0];
    // WGSL has no isnan/isinf, and a compiler may assume floats are finite and fold x != x away;
    // an all-ones exponent in the bit pattern is the one test it cannot break.
    if ((bitcast<u32>(sumsq) & 0x7f800000u) == 0x7f800000u) {
        return;
    }
    var clip = 1.0;
    if (params.max_grad_norm > 0.0) {
        clip = min(1.0, params.max_grad_norm / (sqrt(sumsq) + 1e-6));
    }
    let g = clip * grad[i];
    let m1 = params.beta1 * m[i] + (1.0 - params.beta1) * g;
    let v1 = params.beta2 * v[i] + (1.0 - params.beta2) * g * g;
    m[i] = m1;
    v[i] = v1;
    theta[i] -= params.lr * (m1 / params.bias1) / (sqrt(v1 / params.bias2) + params.eps);
}
