
// ---- gemm_tile: the tiled GEMM core shared by every matrix-product kernel --------------------
//
// Computes C[m, n] = sum_k A[m, k] B[k, n] for m < M, n < N, k in this workgroup's split-K slice.
// It is appended to a kernel's own source, which describes the problem through these functions:
//
//   fn gemm_dims() -> vec3<u32>          (M, N, K)
//   fn gemm_k_per_split() -> u32         K values per split-K slice, a multiple of GEMM_TK (or K)
//   fn gemm_a_k_fast() -> bool           neighbouring k of A are neighbours in memory (else m are)
//   fn gemm_b_n_fast() -> bool           neighbouring n of B are neighbours in memory (else k are)
//   fn a_m_part(m: u32) -> vec4<i32>,  fn a_k_part(k: u32) -> vec4<i32>
//   fn a_load(m_part: vec4<i32>, k_part: vec4<i32>) -> f32
//   fn b_k_part(k: u32) -> vec4<i32>,  fn b_n_part(n: u32) -> vec4<i32>
//   fn b_load(k_part: vec4<i32>, n_part: vec4<i32>) -> f32
//   fn store_c(m: u32, n: u32, split: u32, value: f32)    called only with m < M, n < N
//
// Where an element of A or B lives is split into a part that depends only on m (or n) and a part
// that depends only on k, each whatever the kernel needs (an offset, pixel coordinates for the
// padding test) packed in a vec4<i32>. Splitting a convolution's indices takes integer divisions;
// this way they are done once per invocation for its m and n, and once per workgroup step for
// the step's GEMM_TK values of k (by 16 invocations, into a table in workgroup memory), instead
// of for every element loaded. `*_load` is only called inside the matrix; parts outside it are
// computed but never loaded from.
//
// Launch: 16x16 invocations; workgroup_id.x picks a 64-wide tile of N, .y a 32-tall tile of M,
// .z the split-K slice [z * k_per_split, (z + 1) * k_per_split).
//
// Each step stages a 32x16 tile of A and a 16x64 tile of B in workgroup memory (every value
// loaded from global memory once per workgroup, by neighbouring invocations at neighbouring
// addresses where the layout allows), then every invocation accumulates a 2x4 block of C in
// registers: rows 2 ty + (0, 1), columns 4 tx + (0..3). Being contiguous, the block's inputs
// are one vec2 of the A tile and one vec4 of the B tile per k: two reads of workgroup memory
// per 8 multiply-adds instead of six (on GPUs such reads, not the arithmetic, bound this loop),
// and the 16 tx of a row still write 64 neighbouring values of C.

// The tile is the 16x16 invocations times their 2x4 blocks.
const GEMM_TM: u32 = 32u;
const GEMM_TN: u32 = 64u;
const GEMM_TK: u32 = 16u;
// Row strides of the staged tiles in vectors, one more than a row holds: tiles are written
// along k when that is the fast direction in memory, and the padding spreads such a column over
// the banks.
const GEMM_A_STRIDE: u32 = 17u;
const GEMM_B_STRIDE: u32 = 17u;

var<workgroup> gemm_a: array<vec2<f32>, 272>; // [GEMM_TK][GEMM_A_STRIDE], (k, m) at [k][m / 2][m % 2]
var<workgroup> gemm_b: array<vec4<f32>, 272>; // [GEMM_TK][GEMM_B_STRIDE], (k, n) at [k][n / 4][n % 4]
// The k parts of A and B for this step (entries [16 h, 16 h + 16) with h = step % 2) and the next.
var<workgroup> gemm_a_k: array<vec4<i32>, 32>;
var<workgroup> gemm_b_k: array<vec4<i32>, 32>;

// Fills half `h` of the k-part tables for the step starting at k0. Invocations 0..15 and 32..47
// do it (two different SIMD groups on 32-wide hardware, so the two run side by side).
fn gemm_fill_k_parts(li: u32, k0: u32, h: u32) {
    if (li < GEMM_TK) {
        gemm_a_k[h * GEMM_TK + li] = a_k_part(k0 + li);
    } else if (li >= 32u && li < 32u + GEMM_TK) {
        gemm_b_k[h * GEMM_TK + li - 32u] = b_k_part(k0 + li - 32u);
    }
}

// Where element e (0..512) of the A tile goes: (k, m) within the tile. Consecutive e run along
// whichever axis is contiguous in memory, so neighbouring invocations load neighbouring words.
fn gemm_a_place(e: u32, k_fast: bool) -> vec2<u32> {
    if (k_fast) {
        return vec2<u32>(e % GEMM_TK, e / GEMM_TK);
    }
    return vec2<u32>(e / GEMM_TM, e % GEMM_TM);
}

// Where element e (0..1024) of the B tile goes: (k, n) within the tile.
fn gemm_b_place(e: u32, n_fast: bool) -> vec2<u32> {
    if (n_fast) {
        return vec2<u32>(e / GEMM_TN, e % GEMM_TN);
    }
    return vec2<u32>(e % GEMM_TK, e / GEMM_TK);
}

// Stages one A element of the step using half h of the k-part table: its value if `live`,
// else 0 (so the multiply loop needs no checks).
fn gemm_put_a(place: vec2<u32>, live: bool, m_part: vec4<i32>, h: u32) {
    var v = 0.0;
    if (live) {
        v = a_load(m_part, gemm_a_k[h * GEMM_TK + place.x]);
    }
    gemm_a[place.x * GEMM_A_STRIDE + place.y / 2u][place.y % 2u] = v;
}

fn gemm_put_b(place: vec2<u32>, live: bool, n_part: vec4<i32>, h: u32) {
    var v = 0.0;
    if (live) {
        v = b_load(gemm_b_k[h * GEMM_TK + place.x], n_part);
    }
    gemm_b[place.x * GEMM_B_STRIDE + place.y / 4u][place.y % 4u] = v;
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

    // This invocation's places in the tiles (the same at every step), whether they fall inside
    // the matrix along m or n, and the m and n parts of their addresses.
    let pa0 = gemm_a_place(li, gemm_a_k_fast());
    let pa1 = gemm_a_place(li + 256u, gemm_a_k_fast());
    let pb0 = gemm_b_place(li, gemm_b_n_fast());
    let pb1 = gemm_b_place(li + 256u, gemm_b_n_fast());
    let pb2 = gemm_b_place(li + 512u, gemm_b_n_fast());
    let pb3 = gemm_b_place(li + 768u, gemm_b_n_fast());
    let a0_in = m0 + pa0.y < dims.x;
    let a1_in = m0 + pa1.y < dims.x;
    let b0_in = n0 + pb0.y < dims.y;
    let b1_in = n0 + pb1.y < dims.y;
    let b2_in = n0 + pb2.y < dims.y;
    let b3_in = n0 + pb3.y < dims.y;
    let ma0 = a_m_part(m0 + pa0.y);
    let ma1 = a_m_part(m0 + pa1.y);
    let nb0 = b_n_part(n0 + pb0.y);
    let nb1 = b_n_part(n0 + pb1.y);
    let nb2 = b_n_part(n0 + pb2.y);
    let nb3 = b_n_part(n0 + pb3.y);

    // The 2x4 block: rows m0 + 2 ty and m0 + 2 ty + 1, columns n0 + 4 tx + (0..3).
    var c0 = vec4<f32>(0.0);
    var c1 = vec4<f32>(0.0);

    gemm_fill_k_parts(li, k_begin, 0u);
    workgroupBarrier();
    // The loop bounds depend only on uniforms and workgroup_id, so the barriers are reached by
    // the whole workgroup.
    var h = 0u;
    for (var k0 = k_begin; k0 < k_end; k0 += GEMM_TK) {
        gemm_put_a(pa0, a0_in && k0 + pa0.x < k_end, ma0, h);
        gemm_put_a(pa1, a1_in && k0 + pa1.x < k_end, ma1, h);
        gemm_put_b(pb0, b0_in && k0 + pb0.x < k_end, nb0, h);
        gemm_put_b(pb1, b1_in && k0 + pb1.x < k_end, nb1, h);
        gemm_put_b(pb2, b2_in && k0 + pb2.x < k_end, nb2, h);
        gemm_put_b(pb3, b3_in && k0 + pb3.x < k_end, nb3, h);
        // The next step's k parts go to the other half, which nobody reads during this step.
        h ^= 1u;
        gemm_fill_k_parts(li, k0 + GEMM_TK, h);
        workgroupBarrier();

        for (var kk = 0u; kk < GEMM_TK; kk++) {
            let a = gemm_a[kk * GEMM_A_STRIDE + lid.y];
            let b = gemm_b[kk * GEMM_B_STRIDE + lid.x];
            c0 = fma(vec4<f32>(a.x), b, c0);
            c1 = fma(vec4<f32>(a.y), b, c1);
        }
        // The next step overwrites the tiles: everyone must be done reading them.
        workgroupBarrier();
    }

    let m = m0 + 2u * lid.y;
    let n = n0 + 4u * lid.x;
    if (m < dims.x) {
        gemm_store(m, n, split, dims.y, c0);
    }
    if (m + 1u < dims.x) {
        gemm_store(m + 1u, n, split, dims.y, c1);
    }
}

// Stores one row of the block: columns n..n + 3, those below n_end.
fn gemm_store(m: u32, n: u32, split: u32, n_end: u32, v: vec4<f32>) {
    for (var j = 0u; j < 4u; j++) {
        if (n + j < n_end) {
            store_c(m, n + j, split, v[j]);
        }
    }
}
