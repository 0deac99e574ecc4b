// y = conv(x, w) + b as an implicit GEMM (the im2col matrix is never stored: b_load finds
// each of its entries in x). x [B, Cin, H, W], w [Cout, Cin, k, k],
// y [B, Cout, OH, OW]:
//   M = Cout, N = B * OH * OW (n = (b, oy, ox)), K = Cin * k * k (k = (ci, ky, kx)).
// Its parameters (conv2d_params.wgsl) and the tiling loop (gemm_tile.wgsl) are appended.

@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> w: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;

fn gemm_dims() -> vec3<u32> {
    let taps = params.kernel * params.kernel;
    return vec3<u32>(params.out_channels, params.batch * params.out_height * params.out_width, params.in_channels * taps);
}

fn gemm_k_per_split() -> u32 {
    return params.k_per_split;
}

// w is [Cout, K] row-major.
fn gemm_a_k_fast() -> bool {
    return true;
}

// Neighbouring n are neighbouring output pixels, which read neighbouring (stride 1) input pixels.
fn gemm_b_n_fast() -> bool {
    return true;
}

// A[m, k] = w[m * K + k].
fn a_m_part(m: u32) -> vec4<i32> {
    return vec4<i32>(i32(m * params.in_channels * params.kernel * params.kernel), 0, 0, 0);
}

fn a_k_part(k: u32) -> vec4<i32> {
    return vec4<i32>(i32(k), 0, 0, 0);
}

fn a_load(m_part: vec4<i32>, k_part: vec4<i32>) -> f32 {
    return w[m_part.x + k_part.x];
}

// B[(ci, ky, kx), (b, oy, ox)] = x[b, ci, iy, ix] with (ix, iy) = (ox, oy) * stride - pad +
// (kx, ky), or 0 in the padding. n part: (offset of (b, 0, iy, ix) at tap (0, 0), its ix, its
// iy); k part: (offset of (ci, ky, kx) from there, kx, ky).
fn b_n_part(n: u32) -> vec4<i32> {
    let pixels = params.out_height * params.out_width;
    let b = n / pixels;
    let p = n % pixels;
    let corner = vec2<i32>(vec2<u32>(p % params.out_width, p / params.out_width) * params.stride) - i32(params.pad);
    let image = i32(b * params.in_channels * params.height * params.width);
    return vec4<i32>(image + corner.y * i32(params.width) + corner.x, corner, 0);
}

fn b_k_part(k: u32) -> vec4<i32> {
    let kernel = params.kernel;
    let tap = vec2<u32>(k % kernel, (k / kernel) % kernel);
    let ci = k / (kernel * kernel);
    return vec4<i32>(i32((ci * params.height + tap.y) * params.width + tap.x), vec2<i32>(tap), 0);
}

fn b_load(k_part: vec4<i32>, n_part: vec4<i32>) -> f32 {
    let at = n_part.yz + k_part.yz;
    if (any(at < vec2<i32>(0)) || at.x >= i32(params.width) || at.y >= i32(params.height)) {
        return 0.0;
    }
    return x[n_part.x + k_part.x];
}

fn store_c(m: u32, n: u32, split: u32, value: f32) {
    let pixels = params.out_height * params.out_width;
    let b = n / pixels;
    let p = n % pixels;
    y[(b * params.out_channels + m) * pixels + p] = value + bias[m];
}
