// Backward of channel_normalize_forward.wgsl: with y = x / (r + EPS), r = ||x|| over channels,
//   dx = dy / (r + EPS) - x <x, dy> / (r (r + EPS)^2)      (the second term is 0 at r = 0)
// (channel_normalize_params.wgsl is appended).

@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> r: array<f32>;
@group(0) @binding(3) var<storage, read> dy: array<f32>;
@group(0) @binding(4) var<storage, read_write> dx: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let p = pixel(gid, groups);
    if (p >= params.n * params.s) {
        return;
    }
    let base = pixel_base(p);
    var dot = 0.0;
    for (var c = 0u; c < params.c; c++) {
        dot += x[base + c * params.s] * dy[base + c * params.s];
    }
    let norm = r[p];
    let inv = 1.0 / (norm + EPS);
    var k = 0.0;
    if (norm > 0.0) {
        k = dot / (norm * (norm + EPS) * (norm + EPS));
    }
    for (var c = 0u; c < params.c; c++) {
        let i = base + c * params.s;
        dx[i] = dy[i] * inv - x[i] * k;
    }
}
