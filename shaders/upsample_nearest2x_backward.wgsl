// Backward of nearest 2x upsampling: each dx value is the sum of the 2x2 block of dy it was
// copied to. One invocation per dx value gathers its four children, so no atomics are needed.

struct Params {
    // dx values: planes * h * w.
    len: u32,
    // dx height and width.
    h: u32,
    w: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> dy: array<f32>;
@group(0) @binding(2) var<storage, read_write> dx: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = gid.x + gid.y * groups.x * 256u;
    if (i < params.len) {
        let plane_len = params.h * params.w;
        let plane = i / plane_len;
        let r = i % plane_len;
        let iy = r / params.w;
        let ix = r % params.w;
        let ow = 2u * params.w;
        // Top-left child; the others are one column and/or one row further.
        let top = plane * 4u * plane_len + 2u * iy * ow + 2u * ix;
        // Row sums first, then their sum: the CPU twin adds in the same order.
        dx[i] = (dy[top] + dy[top + 1u]) + (dy[top + ow] + dy[top + ow + 1u]);
    }
}
