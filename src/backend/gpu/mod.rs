//! The GPU backend: every op is one or a few dispatches of a WGSL kernel from `shaders/`.
//! Each `*.rs` file here holds the host side of a family of kernels: their parameter structs
//! (mirroring the WGSL `Params` struct field by field) and their launch geometry.

mod conv;
mod elementwise;
mod loss;
mod norm;
mod optim;
mod random;

use std::rc::Rc;

use super::{AdamStep, Backend, Conv2d, Metric, RandomKey};
use crate::gpu::{Binding, GpuBuffer, GpuContext, Kernel, Launcher};
use crate::tensor::Tensor;
use crate::Result;

pub type GpuTensor = Tensor<Rc<GpuBuffer>>;

/// A u8 dataset on the GPU, packed four bytes to a u32 word.
pub struct GpuBytes {
    buffer: Rc<GpuBuffer>,
    len: usize,
}

impl GpuBytes {
    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

pub struct GpuBackend {
    pub launcher: Launcher,
}

/// Invocations per workgroup of the one-dimensional kernels.
pub(crate) const WORKGROUP: u32 = 256;
/// Most workgroups WebGPU allows along one dimension.
const MAX_GROUPS: u32 = 65535;

/// Workgroups covering `n` items at `per_group` items each, spread over x and y when one
/// dimension is not enough. Kernels rebuild the linear index as
/// `gid.x + gid.y * num_workgroups.x * WORKGROUP`.
pub(crate) fn grid(n: usize, per_group: u32) -> [u32; 3] {
    let groups = (n as u64).div_ceil(per_group as u64).max(1) as u32;
    if groups <= MAX_GROUPS {
        [groups, 1, 1]
    } else {
        let y = groups.div_ceil(MAX_GROUPS);
        [groups.div_ceil(y), y, 1]
    }
}

/// The storage binding of a tensor view.
pub(crate) fn bind(t: &GpuTensor) -> Binding<'_> {
    Binding { buffer: t.storage.raw(), offset: (t.offset * 4) as u64, size: (t.len() * 4) as u64 }
}

/// A kernel made of one WGSL file (plus optional shared parts), entry point `main`.
macro_rules! kernel {
    ($name:literal) => {
        $crate::gpu::Kernel { name: $name, sources: &[include_str!(concat!("../../../shaders/", $name, ".wgsl"))], entry: "main" }
    };
    ($name:literal, entry = $entry:literal) => {
        $crate::gpu::Kernel {
            name: concat!($name, "::", $entry),
            sources: &[include_str!(concat!("../../../shaders/", $name, ".wgsl"))],
            entry: $entry,
        }
    };
    ($name:literal, entry = $entry:literal, with $($part:literal),+) => {
        $crate::gpu::Kernel {
            name: concat!($name, "::", $entry),
            sources: &[include_str!(concat!("../../../shaders/", $name, ".wgsl")), $(include_str!(concat!("../../../shaders/", $part, ".wgsl"))),+],
            entry: $entry,
        }
    };
    ($name:literal, with $($part:literal),+) => {
        $crate::gpu::Kernel {
            name: $name,
            sources: &[include_str!(concat!("../../../shaders/", $name, ".wgsl")), $(include_str!(concat!("../../../shaders/", $part, ".wgsl"))),+],
            entry: "main",
        }
    };
}
pub(crate) use kernel;

impl GpuBackend {
    pub fn new(ctx: GpuContext) -> Self {
        GpuBackend { launcher: Launcher::new(ctx) }
    }

    /// Opens the default adapter and wraps it, waiting on this thread.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn new_blocking() -> Result<Self> {
        Ok(Self::new(GpuContext::new_blocking()?))
    }

    pub fn context(&self) -> &GpuContext {
        &self.launcher.ctx
    }

    /// A tensor of `shape` with undefined contents, for outputs that a kernel overwrites.
    pub fn empty(&self, shape: &[usize]) -> GpuTensor {
        let len: usize = shape.iter().product();
        Tensor::new(self.launcher.buffer((len * 4) as u64), shape)
    }

    /// Waits until the GPU has finished everything recorded so far.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn wait(&self) -> Result<()> {
        self.launcher.wait()
    }

    pub(crate) fn dispatch<P: bytemuck::Pod>(
        &self,
        kernel: &Kernel,
        params: &P,
        tensors: &[&GpuTensor],
        workgroups: [u32; 3],
    ) {
        let bindings: Vec<Binding> = tensors.iter().map(|t| bind(t)).collect();
        self.launcher.dispatch(kernel, bytemuck::bytes_of(params), &bindings, workgroups);
    }
}

impl Backend for GpuBackend {
    type Storage = Rc<GpuBuffer>;
    type Bytes = GpuBytes;

    fn name(&self) -> String {
        self.context().adapter.to_string()
    }

    fn empty(&self, shape: &[usize]) -> GpuTensor {
        GpuBackend::empty(self, shape)
    }

    fn zeros(&self, shape: &[usize]) -> GpuTensor {
        let t = self.empty(shape);
        self.write(&t, &vec![0.0; t.len()]);
        t
    }

    fn upload(&self, data: &[f32], shape: &[usize]) -> GpuTensor {
        let t = self.empty(shape);
        assert_eq!(data.len(), t.len(), "upload of {} values into shape {shape:?}", data.len());
        self.write(&t, data);
        t
    }

    fn write(&self, dst: &GpuTensor, data: &[f32]) {
        assert_eq!(data.len(), dst.len());
        self.launcher.write(dst.storage.raw(), (dst.offset * 4) as u64, bytemuck::cast_slice(data));
    }

    fn copy(&self, src: &GpuTensor, dst: &GpuTensor) {
        assert_eq!(src.len(), dst.len());
        self.launcher.copy(
            src.storage.raw(),
            (src.offset * 4) as u64,
            dst.storage.raw(),
            (dst.offset * 4) as u64,
            (src.len() * 4) as u64,
        );
    }

    fn upload_bytes(&self, data: &[u8]) -> GpuBytes {
        let buffer = self.launcher.buffer(data.len() as u64);
        let mut padded = data.to_vec();
        padded.resize(data.len().next_multiple_of(4), 0);
        self.launcher.write(buffer.raw(), 0, &padded);
        GpuBytes { buffer, len: data.len() }
    }

    async fn read(&self, t: &GpuTensor) -> Result<Vec<f32>> {
        let bytes = self.launcher.read_bytes(t.storage.raw(), (t.offset * 4) as u64, (t.len() * 4) as u64).await?;
        Ok(bytemuck::pod_collect_to_vec(&bytes))
    }

    fn work_counts(&self) -> Option<super::WorkCounts> {
        Some(self.launcher.work_counts())
    }

    fn flush(&self) {
        self.launcher.flush();
    }

    fn conv2d(&self, g: &Conv2d, x: &GpuTensor, w: &GpuTensor, b: &GpuTensor, y: &GpuTensor) {
        conv::conv2d(self, g, x, w, b, y)
    }
    fn conv2d_backward_input(&self, g: &Conv2d, dy: &GpuTensor, w: &GpuTensor, dx: &GpuTensor) {
        conv::conv2d_backward_input(self, g, dy, w, dx)
    }
    fn conv2d_backward_weight(&self, g: &Conv2d, dy: &GpuTensor, x: &GpuTensor, dw: &GpuTensor) {
        conv::conv2d_backward_weight(self, g, dy, x, dw)
    }
    fn linear(&self, x: &GpuTensor, w: &GpuTensor, b: &GpuTensor, y: &GpuTensor) {
        conv::linear(self, x, w, b, y)
    }
    fn linear_backward_input(&self, dy: &GpuTensor, w: &GpuTensor, dx: &GpuTensor) {
        conv::linear_backward_input(self, dy, w, dx)
    }
    fn linear_backward_weight(&self, dy: &GpuTensor, x: &GpuTensor, dw: &GpuTensor) {
        conv::linear_backward_weight(self, dy, x, dw)
    }
    fn channel_sum(&self, x: &GpuTensor, out: &GpuTensor, per_sample: bool) {
        conv::channel_sum(self, x, out, per_sample)
    }

    fn group_norm(
        &self,
        groups: usize,
        silu: bool,
        x: &GpuTensor,
        gamma: &GpuTensor,
        beta: &GpuTensor,
        y: &GpuTensor,
        stats: &GpuTensor,
    ) {
        norm::group_norm(self, groups, silu, x, gamma, beta, y, stats)
    }
    fn group_norm_backward(
        &self,
        groups: usize,
        silu: bool,
        dy: &GpuTensor,
        x: &GpuTensor,
        gamma: &GpuTensor,
        beta: &GpuTensor,
        stats: &GpuTensor,
        dx: &GpuTensor,
        dgamma: &GpuTensor,
        dbeta: &GpuTensor,
    ) {
        norm::group_norm_backward(self, groups, silu, dy, x, gamma, beta, stats, dx, dgamma, dbeta)
    }
    fn channel_normalize(&self, x: &GpuTensor, y: &GpuTensor, r: &GpuTensor) {
        norm::channel_normalize(self, x, y, r)
    }
    fn channel_normalize_backward(&self, x: &GpuTensor, r: &GpuTensor, dy: &GpuTensor, dx: &GpuTensor) {
        norm::channel_normalize_backward(self, x, r, dy, dx)
    }
    fn silu(&self, x: &GpuTensor, y: &GpuTensor) {
        elementwise::silu(self, x, y)
    }
    fn silu_backward(&self, x: &GpuTensor, dy: &GpuTensor, dx: &GpuTensor) {
        elementwise::silu_backward(self, x, dy, dx)
    }
    fn upsample2x(&self, x: &GpuTensor, y: &GpuTensor) {
        elementwise::upsample2x(self, x, y)
    }
    fn upsample2x_backward(&self, dy: &GpuTensor, dx: &GpuTensor) {
        elementwise::upsample2x_backward(self, dy, dx)
    }

    fn copy_channels(
        &self,
        src: &GpuTensor,
        src_start: usize,
        dst: &GpuTensor,
        dst_start: usize,
        count: usize,
        accumulate: bool,
    ) {
        elementwise::copy_channels(self, src, src_start, dst, dst_start, count, accumulate)
    }
    fn add_channel_bias(&self, x: &GpuTensor, e: &GpuTensor, y: &GpuTensor) {
        elementwise::add_channel_bias(self, x, e, y)
    }
    fn add(&self, a: &GpuTensor, b: &GpuTensor, out: &GpuTensor) {
        elementwise::add(self, a, b, out)
    }
    fn scale_add(&self, alpha: &GpuTensor, x: &GpuTensor, beta: &GpuTensor, y: &GpuTensor, out: &GpuTensor) {
        elementwise::scale_add(self, alpha, x, beta, y, out)
    }
    fn sinusoidal_embedding(&self, c: &GpuTensor, out: &GpuTensor) {
        elementwise::sinusoidal_embedding(self, c, out)
    }
    fn keep_known(&self, patch: usize, x: &GpuTensor, y: &GpuTensor, keep: &GpuTensor, out: &GpuTensor) {
        elementwise::keep_known(self, patch, x, y, keep, out)
    }

    fn loss(
        &self,
        metric: Metric,
        pred: &GpuTensor,
        target: &GpuTensor,
        weight: &GpuTensor,
        loss: &GpuTensor,
        stats: &GpuTensor,
    ) {
        loss::loss(self, metric, pred, target, weight, loss, stats)
    }
    fn loss_backward(
        &self,
        metric: Metric,
        pred: &GpuTensor,
        target: &GpuTensor,
        weight: &GpuTensor,
        stats: &GpuTensor,
        dpred: &GpuTensor,
    ) {
        loss::loss_backward(self, metric, pred, target, weight, stats, dpred)
    }
    fn softmax_cross_entropy(&self, logits: &GpuTensor, labels: &GpuTensor, loss: &GpuTensor) {
        loss::softmax_cross_entropy(self, logits, labels, loss)
    }
    fn softmax_cross_entropy_backward(&self, logits: &GpuTensor, labels: &GpuTensor, dlogits: &GpuTensor) {
        loss::softmax_cross_entropy_backward(self, logits, labels, dlogits)
    }
    fn sum(&self, x: &GpuTensor, out: &GpuTensor, square: bool, scale: f32) {
        loss::sum(self, x, out, square, scale)
    }

    fn adam(
        &self,
        step: &AdamStep,
        params: &GpuTensor,
        grad: &GpuTensor,
        m: &GpuTensor,
        v: &GpuTensor,
        grad_sumsq: &GpuTensor,
    ) {
        optim::adam(self, step, params, grad, m, v, grad_sumsq)
    }
    fn ema(&self, mu: f32, avg: &GpuTensor, x: &GpuTensor) {
        optim::ema(self, mu, avg, x)
    }

    fn random_uniform(&self, key: RandomKey, out: &GpuTensor) {
        random::random_uniform(self, key, out)
    }
    fn random_normal(&self, key: RandomKey, out: &GpuTensor) {
        random::random_normal(self, key, out)
    }
    fn random_index(&self, key: RandomKey, bound: u32, out: &GpuTensor) {
        random::random_index(self, key, bound, out)
    }
    fn gather_rows(&self, data: &GpuBytes, row_len: usize, index: &GpuTensor, out: &GpuTensor) {
        random::gather_rows(self, data, row_len, index, out)
    }
}

/// Exposes `GpuBytes`'s buffer to the kernel modules.
impl GpuBytes {
    pub(crate) fn binding(&self) -> Binding<'_> {
        Binding { buffer: self.buffer.raw(), offset: 0, size: self.len.next_multiple_of(4) as u64 }
    }
}
