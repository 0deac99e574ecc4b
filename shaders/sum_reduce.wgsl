// out[group] = scale * sum of x_i (or x_i^2 when square) over this workgroup's share of x.
// The host runs it twice: first many workgroups, each summing a grid-strided slice into one
// partial; then one workgroup sums the partials and applies the scale. Each thread first adds its
// strided elements in a register, then workgroup_sum (workgroup_sum.wgsl, appended) adds the 256
// thread sums, so no addition chain is long (f32 rounding error grows with the chain length).

struct Params {
    len: u32,
    // 1: sum the squares (gradient norm); 0: plain sum.
    square: u32,
    scale: f32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

alias Partial = f32;

@compute @workgroup_size(256)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    // Consecutive threads read consecutive elements on every trip (coalesced loads).
    let threads = groups.x * 256u;
    var acc = 0.0;
    for (var i = wid.x * 256u + lid; i < params.len; i += threads) {
        let v = x[i];
        acc += select(v, v * v, params.square != 0u);
    }
    let total = workgroup_sum(acc, lid);
    if (lid == 0u) {
        out[wid.x] = params.scale * total;
    }
}
