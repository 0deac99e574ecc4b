//! The one interface every model op goes through: [`Backend`], which is [`Memory`] (tensors:
//! allocate, upload, read back) and one trait per family of ops, each in the file of its name
//! ([`ConvOps`] in `conv.rs`, [`NormOps`], [`ElementwiseOps`], [`LossOps`], [`OptimOps`],
//! [`RandomOps`]). Two implementations sit behind it: [`gpu::GpuBackend`] (our WGSL kernels,
//! through wgpu: Vulkan/Metal/DX12 natively, WebGPU in the browser) and [`cpu::CpuBackend`]
//! (plain Rust: the reference every kernel is tested against, and a fallback where there is no
//! usable GPU). Each implements a family in its file of the same name (`cpu/conv.rs` holds
//! `impl ConvOps for CpuBackend`), so an op's signature is written in its trait and in each
//! implementation, nowhere else.
//!
//! Model code names `B: Backend` and gets every op; code holding a concrete backend brings the
//! traits it calls into scope with `use crate::backend::prelude::*`.
//!
//! Conventions shared by every op:
//! - images are NCHW, f32, contiguous; a `[N, C, S]` argument is NCHW with `S = H * W`;
//! - outputs are passed in, already allocated with the right shape, and are overwritten
//!   (never accumulated into) unless the op says otherwise;
//! - ops only record work: nothing runs or comes back until [`Memory::read`] (or
//!   [`Memory::flush`]), so a whole training step becomes one submission on the GPU.

pub mod cpu;
pub mod gpu;

mod conv;
mod elementwise;
mod loss;
mod norm;
mod optim;
mod random;

use std::future::Future;
use std::ops::Range;

pub use crate::gpu::launcher::WorkCounts;
pub use crate::random::RandomKey;
use crate::tensor::Tensor;
pub use conv::{Conv2d, ConvOps};
pub(crate) use elementwise::keep_known_geometry;
pub use elementwise::ElementwiseOps;
pub use loss::{LossOps, Metric};
pub use norm::NormOps;
pub use optim::{AdamStep, OptimOps};
pub use random::RandomOps;

/// Every backend trait, for code that calls ops on a concrete backend (`CpuBackend`,
/// `GpuBackend`) rather than through a `B: Backend` bound: `use crate::backend::prelude::*`.
pub mod prelude {
    pub use super::{Backend, ConvOps, ElementwiseOps, LossOps, Memory, NormOps, OptimOps, RandomOps};
}

pub type BTensor<B> = Tensor<<B as Memory>::Storage>;

/// A backend: its memory and every family of ops. Implemented for whatever implements them all.
pub trait Backend: Memory + ConvOps + NormOps + ElementwiseOps + LossOps + OptimOps + RandomOps {}

impl<T: Memory + ConvOps + NormOps + ElementwiseOps + LossOps + OptimOps + RandomOps> Backend for T {}

/// Tensors on a device: allocation, upload, copies and readback. Every op family builds on it.
pub trait Memory {
    /// Storage of f32 tensors.
    type Storage: Clone;
    /// A read-only byte array (a u8 dataset).
    type Bytes;

    /// Human-readable name of the device (adapter name, or "cpu").
    fn name(&self) -> String;

    /// A new tensor of `shape` whose contents are undefined: for outputs an op overwrites.
    fn empty(&self, shape: &[usize]) -> BTensor<Self>;
    /// A new tensor of `shape`, filled with zeros.
    fn zeros(&self, shape: &[usize]) -> BTensor<Self>;
    /// A new tensor holding `data`.
    fn upload(&self, data: &[f32], shape: &[usize]) -> BTensor<Self>;
    /// Overwrite `dst` with `data` (recorded in order with the other ops).
    fn write(&self, dst: &BTensor<Self>, data: &[f32]);
    /// Copy `src` into `dst` (same length).
    fn copy(&self, src: &BTensor<Self>, dst: &BTensor<Self>);
    /// Rows `rows` of `src` (along its first dimension) as a new tensor: a copy rather than a
    /// view, because a view's offset would have to meet the GPU's binding alignment.
    fn rows(&self, src: &BTensor<Self>, rows: Range<usize>) -> BTensor<Self> {
        let row_len: usize = src.shape[1..].iter().product();
        let mut shape = src.shape.clone();
        shape[0] = rows.len();
        let out = self.empty(&shape);
        self.copy(&src.view(rows.start * row_len, &shape), &out);
        out
    }
    fn upload_bytes(&self, data: &[u8]) -> Self::Bytes;
    /// Run everything recorded so far and return the values of `t`.
    fn read(&self, t: &BTensor<Self>) -> impl Future<Output = crate::Result<Vec<f32>>>;
    /// Start everything recorded so far without waiting for it.
    fn flush(&self);
    /// Kernel dispatches recorded and queue submissions made so far, on a backend with a
    /// device queue (None on the CPU, which runs each op as it is called).
    fn work_counts(&self) -> Option<WorkCounts> {
        None
    }
}
