// Nearest-neighbour 2x upsampling: x [planes, h, w] -> y [planes, 2h, 2w], one invocation per
// output value.

struct Params {
    // Output values: planes * 2h * 2w.
    len: u32,
    // Input height and width.
    h: u32,
    w: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = gid.x + gid.y * groups.x * 256u;
    if (i < params.len) {
        let ow = 2u * params.w;
        let plane_len = 4u * params.h * params.w;
        let plane = i / plane_len;
        let r = i % plane_len;
        let oy = r / ow;
        let ox = r % ow;
        y[i] = x[(plane * params.h + oy / 2u) * params.w + ox / 2u];
    }
}
