// ---- silu: SiLU and its derivative, appended to every kernel that applies them -------------
//
// The sigmoid is built from exp(-|v|), which never overflows, so it stays finite and exact in
// the tails (GPUs are not required to handle the infinity exp(-v) gives for very negative v).

fn sigmoid(v: f32) -> f32 {
    let e = exp(-abs(v));
    return select(e / (1.0 + e), 1.0 / (1.0 + e), v >= 0.0);
}

// v * sigmoid(v)
fn silu(v: f32) -> f32 {
    return v * sigmoid(v);
}

// d silu(v) / dv = s + v s (1 - s), s = sigmoid(v)
fn silu_grad(v: f32) -> f32 {
    let s = sigmoid(v);
    return s + v * s * (1.0 - s);
}
