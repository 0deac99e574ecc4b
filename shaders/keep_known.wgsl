// The projection step of zero-shot editing (docs/paper.md#zero-shot-editing-algorithm-4):
// x <- A^-1[ (A y) (1 - Omega) + (A x) Omega ] for the transforms MNIST editing needs. A is an
// orthonormal transform of each p x p tile whose first coordinate is the tile mean, and the
// known part (1 - Omega, here `keep`) is that mean alone, so the projection moves each kept
// tile of x by the difference of the tile means: out = x + (mean_p(y) - mean_p(x)), which
// needs no basis at all. With p = 1 (A = identity) it is inpainting: the kept pixel is y itself,
// chosen rather than computed so that it equals y bit for bit (x + (y - x) need not).
// x, y, out are [planes, height, width] (planes = samples x channels); keep is read at
// i % keep_len, so it is either one mask value per value or one sample's masks broadcast over
// the batch.

struct Params {
    len: u32,
    height: u32,
    width: u32,
    // Side p of the square tiles (`patch` is a reserved word in WGSL); divides height and width.
    tile: u32,
    keep_len: u32,
    // 1 / (p * p), rounded on the host: exact for the powers of two MNIST uses (p = 2, 4).
    inv_area: f32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> y: array<f32>;
@group(0) @binding(3) var<storage, read> keep: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = gid.x + gid.y * groups.x * 256u;
    if (i >= params.len) {
        return;
    }
    // A binary mask: anything above one half is known (NaN is not).
    let known = keep[i % params.keep_len];
    if (!(known > 0.5)) {
        out[i] = x[i];
        return;
    }
    if (params.tile == 1u) {
        out[i] = y[i];
        return;
    }
    // The tile around i: its plane, then its top-left corner within the plane.
    let plane_len = params.height * params.width;
    let plane = i / plane_len * plane_len;
    let s = i % plane_len;
    let top = s / params.width / params.tile * params.tile;
    let left = s % params.width / params.tile * params.tile;
    // Every invocation of the tile sums the same values in the same row-major order (as the
    // CPU twin does), so all of them move by the same amount.
    var diff: f32 = 0.0;
    for (var r: u32 = 0u; r < params.tile; r = r + 1u) {
        let row = plane + (top + r) * params.width + left;
        for (var c: u32 = 0u; c < params.tile; c = c + 1u) {
            diff = diff + (y[row + c] - x[row + c]);
        }
    }
    out[i] = x[i] + diff * params.inv_area;
}
