// dx = dy * d silu(x) / dx = dy * (s + x s (1 - s)), s = sigmoid(x), elementwise.

struct Params {
    len: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> dy: array<f32>;
@group(0) @binding(3) var<storage, read_write> dx: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = gid.x + gid.y * groups.x * 256u;
    if (i < params.len) {
        let v = x[i];
        // Same overflow-free sigmoid as the forward.
        let e = exp(-abs(v));
        let s = select(e / (1.0 + e), 1.0 / (1.0 + e), v >= 0.0);
        dx[i] = dy[i] * (s + v * s * (1.0 - s));
    }
}
