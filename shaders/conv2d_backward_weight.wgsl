// dw = d(loss)/dw of a convolution, as an implicit GEMM over dy and x:
//   dw[co, ci, ky, kx] = sum_{b, oy, ox} dy[b, co, oy, ox] x[b, ci, oy * stride + ky - pad, ...]
//   M = Cout, N = Cin * k * k (n = (ci, ky, kx)), K = B * OH * OW (k = (b, oy, ox)).
// K is long and M, N small, so the host splits K over workgroup_id.z: slice `split` writes its
// partial sums to out[split, M * N] (then summed by channel_sum); with one slice, out is dw.
// Its parameters (conv2d_params.wgsl) and the tiling loop (gemm_tile.wgsl) are appended.

@group(0) @binding(1) var<storage, read> dy: array<f32>;
@group(0) @binding(2) var<storage, read> x: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

fn gemm_dims() -> vec3<u32> {
    let taps = params.kernel * params.kernel;
    return vec3<u32>(params.out_channels, params.in_channels * taps, params.batch * params.out_height * params.out_width);
}

fn gemm_k_per_split() -> u32 {
    return params.k_per_split;
}

// A[co, (b, p)] = dy[b, co, p]: consecutive k are consecutive output pixels.
fn gemm_a_k_fast() -> bool {
    return true;
}

// B[(b, oy, ox), (ci, tap)]: consecutive k read neighbouring input pixels; consecutive n jump
// between taps and channels.
fn gemm_b_n_fast() -> bool {
    return false;
}

// A[co, (b, p)] = dy[b, co, p]: m part co * pixels, k part b * Cout * pixels + p.
fn a_m_part(m: u32) -> vec4<i32> {
    return vec4<i32>(i32(m * params.out_height * params.out_width), 0, 0, 0);
}

fn a_k_part(k: u32) -> vec4<i32> {
    let pixels = params.out_height * params.out_width;
    return vec4<i32>(i32((k / pixels) * params.out_channels * pixels + k % pixels), 0, 0, 0);
}

fn a_load(m_part: vec4<i32>, k_part: vec4<i32>) -> f32 {
    return dy[m_part.x + k_part.x];
}

// B[(b, oy, ox), (ci, ky, kx)] = x[b, ci, iy, ix] with (ix, iy) = (ox, oy) * stride +
// (kx, ky) - pad, or 0 in the padding. k part: (offset of (b, 0, oy * stride, ox * stride),
// ox * stride, oy * stride); n part: (offset of (ci, ky - pad, kx - pad) from there, kx - pad,
// ky - pad).
fn b_k_part(k: u32) -> vec4<i32> {
    let pixels = params.out_height * params.out_width;
    let b = k / pixels;
    let p = k % pixels;
    let corner = vec2<i32>(vec2<u32>(p % params.out_width, p / params.out_width) * params.stride);
    let image = i32(b * params.in_channels * params.height * params.width);
    return vec4<i32>(image + corner.y * i32(params.width) + corner.x, corner, 0);
}

fn b_n_part(n: u32) -> vec4<i32> {
    let kernel = params.kernel;
    let taps = kernel * kernel;
    let ci = n / taps;
    let shift = vec2<i32>(vec2<u32>(n % kernel, (n % taps) / kernel)) - i32(params.pad);
    let plane = i32(ci * params.height * params.width);
    return vec4<i32>(plane + shift.y * i32(params.width) + shift.x, shift, 0);
}

fn b_load(k_part: vec4<i32>, n_part: vec4<i32>) -> f32 {
    let at = k_part.yz + n_part.yz;
    if (any(at < vec2<i32>(0)) || at.x >= i32(params.width) || at.y >= i32(params.height)) {
        return 0.0;
    }
    return x[k_part.x + n_part.x];
}

fn store_c(m: u32, n: u32, split: u32, value: f32) {
    let taps = params.kernel * params.kernel;
    let mn = params.out_channels * params.in_channels * taps;
    out[split * mn + m * params.in_channels * taps + n] = value;
}
