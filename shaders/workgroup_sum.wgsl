// Shared part: the workgroup's tree sum, appended to every kernel that reduces across a
// workgroup of 256 invocations (channel_sum, group_norm_forward, group_norm_backward,
// loss_forward, sum_reduce). The kernel names what is summed with an alias: `alias Partial = f32;`,
// or `vec2<f32>` for two sums at once (added component by component, so each is the same sum).
//
// Each invocation first adds its strided share in a register; the tree then adds the 256 partial
// sums in log2(256) = 8 rounds, so f32 rounding grows with the log of the length, not the length.

var<workgroup> partial: array<Partial, 256>;

// Sum of `v` over the workgroup, returned to every invocation. Must be called in uniform control
// flow. The trailing barrier keeps a fast invocation from overwriting `partial` in a next call
// before every invocation has read this result.
fn workgroup_sum(v: Partial, lid: u32) -> Partial {
    partial[lid] = v;
    workgroupBarrier();
    for (var half = 128u; half > 0u; half >>= 1u) {
        if (lid < half) {
            partial[lid] += partial[lid + half];
        }
        workgroupBarrier();
    }
    let total = partial[0];
    workgroupBarrier();
    return total;
}
