// Counter-based random numbers: Philox4x32-10, bit for bit the same as src/random.rs. Element i
// of the output is a pure function of (seed, step, stream, i): counter = (i, step, stream, 0),
// key = (seed lo, seed hi). Three entry points share the generator:
//   uniform01: 24 random bits as a float in [0, 1) (not `uniform`: a function of that name would
//              shadow the address space in `var<uniform>` below);
//   normal:    Box-Muller on the first two words (as random::normal);
//   index:     an integer in [0, bound) (Lemire's multiply-shift), stored as f32.

struct Params {
    len: u32,
    step: u32,
    stream: u32,
    seed_lo: u32,
    seed_hi: u32,
    // Exclusive upper bound of `index`; unused by the other entry points.
    bound: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;

const M0: u32 = 0xD2511F53u;
const M1: u32 = 0xCD9E8D57u;
const W0: u32 = 0x9E3779B9u;
const W1: u32 = 0xBB67AE85u;

// The full 64-bit product of two u32 as (high word, low word). WGSL has no u64, so the high word
// is assembled from the four 16 x 16-bit partial products, each of which fits in a u32; the
// middle sum collects the carries out of the low 32 bits (at most 3 * 0xffff, no overflow).
fn mulhilo(a: u32, b: u32) -> vec2<u32> {
    let a0 = a & 0xffffu;
    let a1 = a >> 16u;
    let b0 = b & 0xffffu;
    let b1 = b >> 16u;
    let p00 = a0 * b0;
    let p01 = a0 * b1;
    let p10 = a1 * b0;
    let p11 = a1 * b1;
    let mid = (p00 >> 16u) + (p01 & 0xffffu) + (p10 & 0xffffu);
    let hi = p11 + (p01 >> 16u) + (p10 >> 16u) + (mid >> 16u);
    // u32 multiplication wraps, which is exactly the low word.
    return vec2<u32>(hi, a * b);
}

fn philox(counter: vec4<u32>, key: vec2<u32>) -> vec4<u32> {
    var c = counter;
    var k = key;
    for (var round = 0u; round < 10u; round++) {
        if (round > 0u) {
            k += vec2<u32>(W0, W1);
        }
        let p0 = mulhilo(M0, c.x);
        let p1 = mulhilo(M1, c.z);
        c = vec4<u32>(p1.x ^ c.y ^ k.x, p1.y, p0.x ^ c.w ^ k.y, p0.y);
    }
    return c;
}

fn words(i: u32) -> vec4<u32> {
    return philox(vec4<u32>(i, params.step, params.stream, 0u), vec2<u32>(params.seed_lo, params.seed_hi));
}

// 24 bits, so the conversion and the power-of-two scale are exact: the same float as the CPU.
fn unit(w: u32) -> f32 {
    return f32(w >> 8u) * (1.0 / 16777216.0);
}

fn linear_index(gid: vec3<u32>, groups: vec3<u32>) -> u32 {
    return gid.x + gid.y * groups.x * 256u;
}

@compute @workgroup_size(256)
fn uniform01(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = linear_index(gid, groups);
    if (i < params.len) {
        out[i] = unit(words(i).x);
    }
}

@compute @workgroup_size(256)
fn normal(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = linear_index(gid, groups);
    if (i < params.len) {
        let w = words(i);
        // u1 in (0, 1] so the log is finite.
        let u1 = f32((w.x >> 8u) + 1u) * (1.0 / 16777216.0);
        let u2 = unit(w.y);
        let radius = sqrt(-2.0 * log(u1));
        // cos(2 pi u2) = -cos(2 pi (u2 - 1/2)): WGSL only bounds cos's error for arguments in
        // [-pi, pi], and u2 - 1/2 is exact, so this keeps the argument there.
        out[i] = -radius * cos(6.283185307179586 * (u2 - 0.5));
    }
}

@compute @workgroup_size(256)
fn index(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = linear_index(gid, groups);
    if (i < params.len) {
        out[i] = f32(mulhilo(words(i).x, params.bound).x);
    }
}
