// Channels [src_start, src_start + count) of src [N, Cs, S] into channels [dst_start, ...) of
// dst [N, Cd, S], overwriting or adding. One invocation per copied value. The channel ranges
// of one sample are contiguous runs of count * S values, which is all the index math needs.

struct Params {
    // Copied values: N * count * S.
    len: u32,
    // count * S: the run copied per sample.
    run: u32,
    // Cs * S and src_start * S.
    src_stride: u32,
    src_offset: u32,
    // Cd * S and dst_start * S.
    dst_stride: u32,
    dst_offset: u32,
    // 1: dst += src (gradients from several consumers); 0: dst = src.
    accumulate: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = gid.x + gid.y * groups.x * 256u;
    if (i < params.len) {
        let n = i / params.run;
        let r = i % params.run;
        let v = src[n * params.src_stride + params.src_offset + r];
        let d = n * params.dst_stride + params.dst_offset + r;
        if (params.accumulate != 0u) {
            dst[d] = dst[d] + v;
        } else {
            dst[d] = v;
        }
    }
}
