// y = conv(x, w) + b as an implicit GEMM (the im2col matrix is never stored: load_b computes
// where each of its entries lives in x). x [B, Cin, H, W], w [Cout, Cin, k, k], y [B, Cout, OH, OW].
//   M = Cout, N = B * OH * OW (n = (b, oy, ox)), K = Cin * k * k (k = (ci, ky, kx)).
// The tiling loop is in gemm_tile.wgsl, appended to this file.

struct Params {
    batch: u32,
    in_channels: u32,
    out_channels: u32,
    height: u32,
    width: u32,
    out_height: u32,
    out_width: u32,
    kernel: u32,
    stride: u32,
    pad: u32,
    k_per_split: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
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

fn load_a(m: u32, k: u32) -> f32 {
    return w[m * params.in_channels * params.kernel * params.kernel + k];
}

fn load_b(k: u32, n: u32) -> f32 {
    let taps = params.kernel * params.kernel;
    let ci = k / taps;
    let tap = k % taps;
    let ky = tap / params.kernel;
    let kx = tap % params.kernel;
    let pixels = params.out_height * params.out_width;
    let b = n / pixels;
    let p = n % pixels;
    let oy = p / params.out_width;
    let ox = p % params.out_width;
    // Input coordinates may fall into the zero padding (negative or past the edge).
    let iy = i32(oy * params.stride + ky) - i32(params.pad);
    let ix = i32(ox * params.stride + kx) - i32(params.pad);
    if (iy < 0 || ix < 0 || iy >= i32(params.height) || ix >= i32(params.width)) {
        return 0.0;
    }
    return x[((b * params.in_channels + ci) * params.height + u32(iy)) * params.width + u32(ix)];
}

fn store_c(m: u32, n: u32, split: u32, value: f32) {
    let pixels = params.out_height * params.out_width;
    let b = n / pixels;
    let p = n % pixels;
    y[(b * params.out_channels + m) * pixels + p] = value + bias[m];
}
