// Unit-normalization across channels at every pixel, LPIPS's feature normalization
// (docs/paper.md#the-perceptual-distance): with r[n, s] = ||x[n, :, s]||,
//   y[n, c, s] = x[n, c, s] / (r[n, s] + EPS), and r kept for the backward.
// Neighbouring invocations are neighbouring pixels, so they read neighbouring addresses
// (channel_normalize_params.wgsl is appended).

@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<storage, read_write> r: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let p = pixel(gid, groups);
    if (p >= params.n * params.s) {
        return;
    }
    let base = pixel_base(p);
    var sq = 0.0;
    for (var c = 0u; c < params.c; c++) {
        let v = x[base + c * params.s];
        sq += v * v;
    }
    let norm = sqrt(sq);
    let inv = 1.0 / (norm + EPS);
    for (var c = 0u; c < params.c; c++) {
        y[base + c * params.s] = x[base + c * params.s] * inv;
    }
    r[p] = norm;
}
