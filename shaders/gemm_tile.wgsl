
// ---- gemm_tile: the tiled GEMM core shared by every matrix-product kernel --------------------
//
// Computes C[m, n] = sum_k A[m, k] B[k, n] for m < M, n < N, k in this workgroup's split-K slice.
// It is appended to a kernel's own source, which describes the problem through these functions
// (so convolutions never materialise an im2col matrix: load_b computes the address instead):
//
//   fn gemm_dims() -> vec3<u32>          (M, N, K)
//   fn gemm_k_per_split() -> u32         K values per split-K slice, a multiple of GEMM_TK (or K)
//   fn gemm_a_k_fast() -> bool           neighbouring k of A are neighbours in memory (else m are)
//   fn gemm_b_n_fast() -> bool           neighbouring n of B are neighbours in memory (else k are)
//   fn load_a(m: u32, k: u32) -> f32     called only with m < M, k < K
//   fn load_b(k: u32, n: u32) -> f32     called only with k < K, n < N
//   fn store_c(m: u32, n: u32, split: u32, value: f32)    called only with m < M, n < N
//
// Launch: 16x16 invocations; workgroup_id.x picks a 64-wide tile of N, .y a 32-tall tile of M,
// .z the split-K slice [z * k_per_split, (z + 1) * k_per_split).
//
// Each step stages a 32x16 tile of A and a 16x64 tile of B in workgroup memory (every value
// loaded from global memory once per workgroup, by neighbouring invocations at neighbouring
// addresses where the layout allows), then every invocation accumulates a 2x4 block of C in
// registers: rows ty and ty + 16, columns tx + 16 j, so neighbouring invocations write
// neighbouring n.

const GEMM_TM: u32 = 32u;
const GEMM_TN: u32 = 64u;
const GEMM_TK: u32 = 16u;
// Row strides of the staged tiles, one more than their width: tiles are written along k when
// that is the fast direction in memory, and the padding spreads such a column over the banks.
const GEMM_A_STRIDE: u32 = 33u;
const GEMM_B_STRIDE: u32 = 65u;

var<workgroup> gemm_a: array<f32, 528>; // [GEMM_TK][GEMM_A_STRIDE], element (k, m)
var<workgroup> gemm_b: array<f32, 1040>; // [GEMM_TK][GEMM_B_STRIDE], element (k, n)

// Stages element `e` (0..512) of the A tile at (m0, k0); zero outside the matrix or the slice,
// so the multiply loop needs no bounds checks.
fn gemm_stage_a(e: u32, m0: u32, k0: u32, m_end: u32, k_end: u32, k_fast: bool) {
    var kk = e / GEMM_TM;
    var mm = e % GEMM_TM;
    if (k_fast) {
        kk = e % GEMM_TK;
        mm = e / GEMM_TK;
    }
    var v = 0.0;
    if (m0 + mm < m_end && k0 + kk < k_end) {
        v = load_a(m0 + mm, k0 + kk);
    }
    gemm_a[kk * GEMM_A_STRIDE + mm] = v;
}

// Stages element `e` (0..1024) of the B tile at (k0, n0).
fn gemm_stage_b(e: u32, k0: u32, n0: u32, k_end: u32, n_end: u32, n_fast: bool) {
    var kk = e % GEMM_TK;
    var nn = e / GEMM_TK;
    if (n_fast) {
        kk = e / GEMM_TN;
        nn = e % GEMM_TN;
    }
    var v = 0.0;
    if (k0 + kk < k_end && n0 + nn < n_end) {
        v = load_b(k0 + kk, n0 + nn);
    }
    gemm_b[kk * GEMM_B_STRIDE + nn] = v;
}

@compute @workgroup_size(16, 16)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let dims = gemm_dims();
    let m0 = wid.y * GEMM_TM;
    let n0 = wid.x * GEMM_TN;
    let split = wid.z;
    let per_split = gemm_k_per_split();
    let k_begin = split * per_split;
    let k_end = min(dims.z, k_begin + per_split);
    let a_k_fast = gemm_a_k_fast();
    let b_n_fast = gemm_b_n_fast();

    // The 2x4 block in named registers (an indexed array might be spilled to memory).
    var c00 = 0.0; var c01 = 0.0; var c02 = 0.0; var c03 = 0.0;
    var c10 = 0.0; var c11 = 0.0; var c12 = 0.0; var c13 = 0.0;

    // The loop bounds depend only on uniforms and workgroup_id, so the barriers are reached by
    // the whole workgroup.
    for (var k0 = k_begin; k0 < k_end; k0 += GEMM_TK) {
        gemm_stage_a(li, m0, k0, dims.x, k_end, a_k_fast);
        gemm_stage_a(li + 256u, m0, k0, dims.x, k_end, a_k_fast);
        gemm_stage_b(li, k0, n0, k_end, dims.y, b_n_fast);
        gemm_stage_b(li + 256u, k0, n0, k_end, dims.y, b_n_fast);
        gemm_stage_b(li + 512u, k0, n0, k_end, dims.y, b_n_fast);
        gemm_stage_b(li + 768u, k0, n0, k_end, dims.y, b_n_fast);
        workgroupBarrier();

        for (var kk = 0u; kk < GEMM_TK; kk++) {
            let ar = kk * GEMM_A_STRIDE + lid.y;
            let a0 = gemm_a[ar];
            let a1 = gemm_a[ar + 16u];
            let br = kk * GEMM_B_STRIDE + lid.x;
            let b0 = gemm_b[br];
            let b1 = gemm_b[br + 16u];
            let b2 = gemm_b[br + 32u];
            let b3 = gemm_b[br + 48u];
            c00 = fma(a0, b0, c00);
            c01 = fma(a0, b1, c01);
            c02 = fma(a0, b2, c02);
            c03 = fma(a0, b3, c03);
            c10 = fma(a1, b0, c10);
            c11 = fma(a1, b1, c11);
            c12 = fma(a1, b2, c12);
            c13 = fma(a1, b3, c13);
        }
        // The next step overwrites the tiles: everyone must be done reading them.
        workgroupBarrier();
    }

    let m_a = m0 + lid.y;
    let m_b = m_a + 16u;
    let n = n0 + lid.x;
    if (m_a < dims.x) {
        gemm_store(m_a, n, split, dims.y, vec4<f32>(c00, c01, c02, c03));
    }
    if (m_b < dims.x) {
        gemm_store(m_b, n, split, dims.y, vec4<f32>(c10, c11, c12, c13));
    }
}

// Stores one row of the block: columns n, n + 16, n + 32, n + 48, those below n_end.
fn gemm_store(m: u32, n: u32, split: u32, n_end: u32, v: vec4<f32>) {
    for (var j = 0u; j < 4u; j++) {
        if (n + 16u * j < n_end) {
            store_c(m, n + 16u * j, split, v[j]);
        }
    }
}
