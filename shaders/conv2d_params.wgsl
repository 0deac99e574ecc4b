// ---- conv2d_params: the geometry every convolution kernel is launched with -----------------
// Shared by conv2d_forward, conv2d_backward_input and conv2d_backward_weight (appended to each),
// mirrored by `ConvParams` in src/backend/gpu/conv.rs.

struct Params {
    batch: u32,
    in_channels: u32,
    out_channels: u32,
    height: u32,
    width: u32,
    out_height: u32,
    out_width: u32,
    kernel: u32,
    stride: u32,
    pad: u32,
    k_per_split: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
