// Exponential moving average of the parameters, in place: avg = mu * avg + (1 - mu) * x
// (the consistency-training teacher and the sampling EMA).

struct Params {
    len: u32,
    mu: f32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read_write> avg: array<f32>;
@group(0) @binding(2) var<storage, read> x: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = gid.x + gid.y * groups.x * 256u;
    if (i < params.len) {
        avg[i] = params.mu * avg[i] + (1.0 - params.mu) * x[i];
    }
}
