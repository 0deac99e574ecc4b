// Shared by channel_normalize_forward.wgsl and channel_normalize_backward.wgsl: x is [N, C, S],
// one invocation per (sample, pixel) p, whose C channels sit S apart from `pixel_base(p)`.

struct Params {
    n: u32,
    c: u32,
    s: u32,
}

// Added to the channel norm before dividing (as in LPIPS).
const EPS: f32 = 1e-10;

@group(0) @binding(0) var<uniform> params: Params;

// The (sample, pixel) of this invocation, or a value >= n * s for an idle one.
fn pixel(gid: vec3<u32>, groups: vec3<u32>) -> u32 {
    return gid.x + gid.y * groups.x * 256u;
}

// Index of channel 0 of pixel p.
fn pixel_base(p: u32) -> u32 {
    return (p / params.s) * params.c * params.s + p % params.s;
}
