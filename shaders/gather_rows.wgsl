// Minibatch gather: out[b, j] = byte j of dataset row index[b], scaled from [0, 255] to [-1, 1].
// The u8 dataset is packed four bytes to a u32 word (little-endian, as uploaded), so a row need
// not start on a word boundary.

struct Params {
    // B * row_len.
    len: u32,
    row_len: u32,
    // Rows in the dataset.
    rows: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> data: array<u32>;
@group(0) @binding(2) var<storage, read> index: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = gid.x + gid.y * groups.x * 256u;
    if (i >= params.len) {
        return;
    }
    let b = i / params.row_len;
    let j = i - b * params.row_len;
    // A kernel cannot report a bad row number, so it clamps to the last row instead of reading
    // past the dataset (the CPU twin panics on the same input).
    let row = min(u32(index[b]), params.rows - 1u);
    let k = row * params.row_len + j;
    let byte = (data[k >> 2u] >> ((k & 3u) * 8u)) & 0xffu;
    // (2 byte - 255) / 255 = byte / 127.5 - 1, as a product with the rounded 1/255: WGSL's
    // division may be approximate but its product is correctly rounded, so this is the CPU's float
    // exactly, and 0 and 255 map to exactly -1 and 1.
    out[i] = (f32(2u * byte) - 255.0) * (1.0 / 255.0);
}
