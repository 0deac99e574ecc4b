// Sinusoidal features of the noise level c [N] into out [N, 2H]:
//   out[n, i] = sin(1000 c[n] f_i),  out[n, H + i] = cos(1000 c[n] f_i),  f_i = 10000^(-i/H).
// One invocation per output value.

struct Params {
    len: u32,
    // H: features per function.
    half: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> c: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = gid.x + gid.y * groups.x * 256u;
    if (i < params.len) {
        let n = i / (2u * params.half);
        let j = i % (2u * params.half);
        let k = j % params.half;
        // exp of a scaled log rather than pow: pow(10000, -k/H) is itself exp2(log2(...)) on
        // GPUs, and this form is the one the CPU twin evaluates too, so both round alike.
        let freq = exp(-9.210340371976184 * f32(k) / f32(params.half));
        // Arguments reach about 1600 rad (|c| <= 1.6). WGSL bounds the error of sin and cos only
        // on [-pi, pi] (2^-11 absolute), so reduce first: r = arg - 2 pi turns, with 2 pi split
        // into 6.28125 (8 significant bits, so turns * 6.28125 is exact, and so is the
        // subtraction of two close numbers) plus a small remainder. r is then within ~3e-7 of
        // the exact reduction, and the spec's bound holds whatever a GPU does with large inputs.
        let arg = 1000.0 * c[n] * freq;
        let turns = round(arg * 0.15915494309189535);
        let r = (arg - turns * 6.28125) - turns * 0.0019353071795864769;
        out[i] = select(cos(r), sin(r), j < params.half);
    }
}
