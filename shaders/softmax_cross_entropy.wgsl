// Softmax cross entropy of a classifier, per sample over K classes: logits [N, K], labels [N]
// (class indices stored as f32, rounded to the nearest integer).
//   forward:  out[n] = -log softmax(logits[n])[c_n] = log sum_j exp(z_j - m) - (z_{c_n} - m),
//             with m = max_j z_j, so exp never overflows and huge logits stay finite;
//   backward: out[n, j] = (softmax(logits[n])_j - [j == c_n]) / N, the gradient of the mean loss.
// A label that does not round to a class in [0, K) (or is NaN) gives NaN for its sample: a
// wrong label shows up rather than training silently on nothing.
// One invocation per sample, looping over its K logits: meant for the class counts of a
// classifier (tens to hundreds), where a row is a few cache lines.
// Mirrored by `SoftmaxCrossEntropyParams` in src/backend/gpu/loss.rs.

struct Params {
    // Samples N and classes K.
    n: u32,
    k: u32,
    // A quiet NaN's bits, from the host: a NaN constant is an error in Tint (Chrome).
    nan_bits: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> logits: array<f32>;
@group(0) @binding(2) var<storage, read> labels: array<f32>;
// forward: the per-sample loss [N]; backward: the gradient [N, K].
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

fn nan() -> f32 {
    return bitcast<f32>(params.nan_bits);
}

// The class of sample n, or -1 when its label is not one.
fn class_of(n: u32) -> i32 {
    let c = round(labels[n]);
    // NaN fails both comparisons.
    if (c >= 0.0 && c < f32(params.k)) {
        return i32(c);
    }
    return -1;
}

fn row_max(base: u32) -> f32 {
    var m = logits[base];
    for (var j = 1u; j < params.k; j++) {
        m = max(m, logits[base + j]);
    }
    return m;
}

// sum_j exp(z_j - m), at least 1 (the maximum's own term).
fn row_sum_exp(base: u32, m: f32) -> f32 {
    var s = 0.0;
    for (var j = 0u; j < params.k; j++) {
        s += exp(logits[base + j] - m);
    }
    return s;
}

@compute @workgroup_size(256)
fn forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let n = gid.x + gid.y * groups.x * 256u;
    if (n >= params.n) {
        return;
    }
    let c = class_of(n);
    if (c < 0) {
        out[n] = nan();
        return;
    }
    let base = n * params.k;
    let m = row_max(base);
    out[n] = log(row_sum_exp(base, m)) - (logits[base + u32(c)] - m);
}

@compute @workgroup_size(256)
fn backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let n = gid.x + gid.y * groups.x * 256u;
    if (n >= params.n) {
        return;
    }
    let base = n * params.k;
    let c = class_of(n);
    if (c < 0) {
        for (var j = 0u; j < params.k; j++) {
            out[base + j] = nan();
        }
        return;
    }
    let m = row_max(base);
    let scale = 1.0 / (row_sum_exp(base, m) * f32(params.n));
    let inv_n = 1.0 / f32(params.n);
    for (var j = 0u; j < params.k; j++) {
        let p = exp(logits[base + j] - m) * scale;
        out[base + j] = select(p, p - inv_n, i32(j) == c);
    }
}
