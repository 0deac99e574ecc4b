// C = A B (+ bias along n), A [M, K] and B [K, N] read through element strides (so a transposed
// operand is just swapped strides), C [M, N] contiguous. Serves the linear layers:
//   linear                  y = x w^T + b    A = x, B = w^T
//   linear_backward_input   dx = dy w        A = dy, B = w
//   linear_backward_weight  dw = dy^T x      A = dy^T, B = x
// The tiling loop is in gemm_tile.wgsl, appended to this file.

struct Params {
    m: u32,
    n: u32,
    k: u32,
    a_stride_m: u32,
    a_stride_k: u32,
    b_stride_k: u32,
    b_stride_n: u32,
    // 1: add bias[n]; 0: the bias binding is a placeholder and is not read.
    has_bias: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> c: array<f32>;

fn gemm_dims() -> vec3<u32> {
    return vec3<u32>(params.m, params.n, params.k);
}

fn gemm_k_per_split() -> u32 {
    return params.k;
}

fn gemm_a_k_fast() -> bool {
    return params.a_stride_k == 1u;
}

fn gemm_b_n_fast() -> bool {
    return params.b_stride_n == 1u;
}

// The parts are the two terms of the element index.
fn a_m_part(m: u32) -> vec4<i32> {
    return vec4<i32>(i32(m * params.a_stride_m), 0, 0, 0);
}

fn a_k_part(k: u32) -> vec4<i32> {
    return vec4<i32>(i32(k * params.a_stride_k), 0, 0, 0);
}

fn a_load(m_part: vec4<i32>, k_part: vec4<i32>) -> f32 {
    return a[m_part.x + k_part.x];
}

fn b_k_part(k: u32) -> vec4<i32> {
    return vec4<i32>(i32(k * params.b_stride_k), 0, 0, 0);
}

fn b_n_part(n: u32) -> vec4<i32> {
    return vec4<i32>(i32(n * params.b_stride_n), 0, 0, 0);
}

fn b_load(k_part: vec4<i32>, n_part: vec4<i32>) -> f32 {
    return b[k_part.x + n_part.x];
}

fn store_c(m: u32, n: u32, split: u32, value: f32) {
    var v = value;
    if (params.has_bias != 0u) {
        v += bias[n];
    }
    c[m * params.n + n] = v;
}
