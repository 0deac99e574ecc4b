// dx = d(loss)/dx of a convolution, as an implicit GEMM over dy and w:
//   dx[b, ci, iy, ix] = sum_{co, ky, kx} w[co, ci, ky, kx] dy[b, co, oy, ox]
// where iy = oy * stride + ky - pad (likewise x), so only taps with (iy + pad - ky) divisible by
// the stride and the quotient inside the output contribute (the rest load zero).
//   M = Cin, N = B * H * W (n = (b, iy, ix)), K = Cout * k * k (k = (co, ky, kx)).
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

fn load_a(m: u32, k: u32) -> f32 {
    let taps = params.kernel * params.kernel;
    let co = k / taps;
    let tap = k % taps;
    return w[(co * params.in_channels + m) * taps + tap];
}

fn load_b(k: u32, n: u32) -> f32 {
    let taps = params.kernel * params.kernel;
    let co = k / taps;
    let tap = k % taps;
    let ky = tap / params.kernel;
    let kx = tap % params.kernel;
    let pixels = params.height * params.width;
    let b = n / pixels;
    let p = n % pixels;
    let iy = p / params.width;
    let ix = p % params.width;
    // Output pixel (oy, ox) whose tap (ky, kx) reads input pixel (iy, ix), if any.
    let ty = i32(iy + params.pad) - i32(ky);
    let tx = i32(ix + params.pad) - i32(kx);
    if (ty < 0 || tx < 0) {
        return 0.0;
    }
    let s = params.stride;
    let oy = u32(ty) / s;
    let ox = u32(tx) / s;
    if (u32(ty) % s != 0u || u32(tx) % s != 0u || oy >= params.out_height || ox >= params.out_width) {
        return 0.0;
    }
    return dy[((b * params.out_channels + co) * params.out_height + oy) * params.out_width + ox];
}

fn store_c(m: u32, n: u32, split: u32, value: f32) {
    let pixels = params.height * params.width;
    let b = n / pixels;
    let p = n % pixels;
    dx[(b * params.in_channels + m) * pixels + p] = value;
}
