// dw = d(loss)/dw of a convolution, as an implicit GEMM over dy and x:
//   dw[co, ci, ky, kx] = sum_{b, oy, ox} dy[b, co, oy, ox] x[b, ci, oy * stride + ky - pad, ...]
//   M = Cout, N = Cin * k * k (n = (ci, ky, kx)), K = B * OH * OW (k = (b, oy, ox)).
// K is long and M, N small, so the host splits K over workgroup_id.z: slice `split` writes its
// partial sums to out[split, M * N] (then summed by channel_sum); with one slice, out is dw.
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

fn load_a(m: u32, k: u32) -> f32 {
    let pixels = params.out_height * params.out_width;
    let b = k / pixels;
    let p = k % pixels;
    return dy[(b * params.out_channels + m) * pixels + p];
}

fn load_b(k: u32, n: u32) -> f32 {
    let taps = params.kernel * params.kernel;
    let ci = n / taps;
    let tap = n % taps;
    let ky = tap / params.kernel;
    let kx = tap % params.kernel;
    let pixels = params.out_height * params.out_width;
    let b = k / pixels;
    let p = k % pixels;
    let oy = p / params.out_width;
    let ox = p % params.out_width;
    let iy = i32(oy * params.stride + ky) - i32(params.pad);
    let ix = i32(ox * params.stride + kx) - i32(params.pad);
    if (iy < 0 || ix < 0 || iy >= i32(params.height) || ix >= i32(params.width)) {
        return 0.0;
    }
    return x[((b * params.in_channels + ci) * params.height + u32(iy)) * params.width + u32(ix)];
}

fn store_c(m: u32, n: u32, split: u32, value: f32) {
    let taps = params.kernel * params.kernel;
    let mn = params.out_channels * params.in_channels * taps;
    out[split * mn + m * params.in_channels * taps + n] = value;
}
