// dx = d(loss)/dx of a convolution, as an implicit GEMM over dy and w:
//   dx[b, ci, iy, ix] = sum_{co, ky, kx} w[co, ci, ky, kx] dy[b, co, oy, ox]
// where iy = oy * stride + ky - pad (likewise x), so only taps with (iy + pad - ky) divisible by
// the stride and the quotient inside the output contribute (the rest load zero).
//   M = Cin, N = B * H * W (n = (b, iy, ix)), K = Cout * k * k (k = (co, ky, kx)).
// The stride must be a power of two (it is 1 or 2), so dividing by it is a shift.
// Its parameters (conv2d_params.wgsl) and the tiling loop (gemm_tile.wgsl) are appended.

@group(0) @binding(1) var<storage, read> dy: array<f32>;
@group(0) @binding(2) var<storage, read> w: array<f32>;
@group(0) @binding(3) var<storage, read_write> dx: array<f32>;

fn gemm_dims() -> vec3<u32> {
    let taps = params.kernel * params.kernel;
    return vec3<u32>(params.in_channels, params.batch * params.height * params.width, params.out_channels * taps);
}

fn gemm_k_per_split() -> u32 {
    return params.k_per_split;
}

// A[ci, (co, tap)] = w[co, ci, tap]: consecutive k are consecutive taps, the closer of the two.
fn gemm_a_k_fast() -> bool {
    return true;
}

// Neighbouring n are neighbouring input pixels, which read neighbouring dy pixels.
fn gemm_b_n_fast() -> bool {
    return true;
}

// A[ci, (co, tap)] = w[co, ci, tap]: m part ci * taps, k part co * Cin * taps + tap.
fn a_m_part(m: u32) -> vec4<i32> {
    return vec4<i32>(i32(m * params.kernel * params.kernel), 0, 0, 0);
}

fn a_k_part(k: u32) -> vec4<i32> {
    let taps = params.kernel * params.kernel;
    return vec4<i32>(i32((k / taps) * params.in_channels * taps + k % taps), 0, 0, 0);
}

fn a_load(m_part: vec4<i32>, k_part: vec4<i32>) -> f32 {
    return w[m_part.x + k_part.x];
}

// B[(co, ky, kx), (b, iy, ix)] = dy[b, co, oy, ox] where (ix, iy) + pad - (kx, ky) =
// (ox, oy) * stride, or 0 where no such output pixel exists. n part: (offset of sample b,
// ix + pad, iy + pad); k part: (offset of channel co, kx, ky).
fn b_n_part(n: u32) -> vec4<i32> {
    let pixels = params.height * params.width;
    let b = n / pixels;
    let p = n % pixels;
    let at = vec2<i32>(vec2<u32>(p % params.width, p / params.width) + params.pad);
    return vec4<i32>(i32(b * params.out_channels * params.out_height * params.out_width), at, 0);
}

fn b_k_part(k: u32) -> vec4<i32> {
    let kernel = params.kernel;
    let tap = vec2<u32>(k % kernel, (k / kernel) % kernel);
    let co = k / (kernel * kernel);
    return vec4<i32>(i32(co * params.out_height * params.out_width), vec2<i32>(tap), 0);
}

fn b_load(k_part: vec4<i32>, n_part: vec4<i32>) -> f32 {
    let t = n_part.yz - k_part.yz;
    let odd = vec2<i32>(i32(params.stride) - 1);
    if (any(t < vec2<i32>(0)) || any((t & odd) != vec2<i32>(0))) {
        return 0.0;
    }
    let o = vec2<u32>(t >> vec2<u32>(countTrailingZeros(params.stride)));
    if (o.x >= params.out_width || o.y >= params.out_height) {
        return 0.0;
    }
    return dy[u32(n_part.x + k_part.x) + o.y * params.out_width + o.x];
}

fn store_c(m: u32, n: u32, split: u32, value: f32) {
    let pixels = params.height * params.width;
    let b = n / pixels;
    let p = n % pixels;
    dx[(b * params.in_channels + m) * pixels + p] = value;
}
