// Sums of x [N, C, S]: over N and S into out [C], or over S alone into out [N, C] when
// per_sample. Output o sums a "run" of values: its S values in each of the N samples (or in its
// one sample). Bias gradients, and the split-K partials of conv2d_backward_weight ([splits, M, 1]).
//
// Two entry points:
// - main: one workgroup per output, for long runs. Each invocation sums a strided part of the
//   run (neighbouring invocations read neighbouring values), then workgroup_sum (the shared
//   part workgroup_sum.wgsl, appended) adds the 256 partial sums, so rounding grows with log2 of
//   the run, not its length.
// - per_thread: one invocation per output, for short runs (<= 64 values), where a workgroup
//   would sit mostly idle; with S = 1 neighbouring invocations read neighbouring channels.

struct Params {
    n: u32,
    c: u32,
    s: u32,
    per_sample: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

alias Partial = f32;

fn outputs() -> u32 {
    return select(params.c, params.n * params.c, params.per_sample != 0u);
}

fn run_length() -> u32 {
    return select(params.n * params.s, params.s, params.per_sample != 0u);
}

// Value i of output o's run.
fn run_value(o: u32, i: u32) -> f32 {
    if (params.per_sample != 0u) {
        // Output o = (n, c) owns the contiguous values [o * S, (o + 1) * S).
        return x[o * params.s + i];
    }
    let sample = i / params.s;
    return x[(sample * params.c + o) * params.s + i % params.s];
}

@compute @workgroup_size(256)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let o = wid.x + wid.y * groups.x;
    let live = o < outputs();
    var acc = 0.0;
    if (live) {
        let run = run_length();
        for (var i = li; i < run; i += 256u) {
            acc += run_value(o, i);
        }
    }
    let total = workgroup_sum(acc, li);
    if (live && li == 0u) {
        out[o] = total;
    }
}

@compute @workgroup_size(256)
fn per_thread(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let o = gid.x + gid.y * groups.x * 256u;
    if (o >= outputs()) {
        return;
    }
    let run = run_length();
    var acc = 0.0;
    for (var i = 0u; i < run; i++) {
        acc += run_value(o, i);
    }
    out[o] = acc;
}
