//! The GPU backend: every op is one or a few dispatches of a WGSL kernel from `shaders/`.
//! Each `*.rs` file here holds the host side of a family of kernels and implements the op family
//! of its name (`../conv.rs`: `ConvOps`, ...): the kernels' parameter structs (mirroring the WGSL
//! `Params` struct field by field) and their launch geometry. This file holds the storage
//! ([`Memory`]) and the dispatch.

mod conv;
mod elementwise;
mod loss;
mod norm;
mod optim;
mod random;

use std::rc::Rc;

use super::Memory;
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

/// A kernel's parameter struct: `#[repr(C)]` and `Pod` for the uniform upload, with the list of
/// its fields and their offsets, so the list cannot drift from the struct (see
/// [`UniformLayout`]).
macro_rules! params {
    ($(#[$attr:meta])* struct $name:ident { $($(#[$field_attr:meta])* $field:ident: $ty:ty,)* }) => {
        $(#[$attr])*
        #[repr(C)]
        #[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
        struct $name {
            $($(#[$field_attr])* $field: $ty,)*
        }

        impl $name {
            const FIELDS: &'static [(&'static str, usize)] =
                &[$((stringify!($field), std::mem::offset_of!($name, $field))),*];

            /// This struct as the parameters of `kernel`.
            const fn uniform(kernel: $crate::gpu::Kernel) -> $crate::backend::gpu::UniformLayout {
                $crate::backend::gpu::UniformLayout { kernel, size: std::mem::size_of::<$name>(), fields: Self::FIELDS }
            }
        }
    };
}
pub(crate) use params;

/// A kernel's parameter struct as Rust lays it out: `tests/shader_layout.rs` holds it against the
/// uniform struct the kernel's WGSL declares at `@group(0) @binding(0)` (names, order, offsets
/// and size), since a mismatch would silently feed a kernel the wrong values.
#[derive(Clone, Copy, Debug)]
pub struct UniformLayout {
    /// One kernel of the WGSL file (its entry points share the struct).
    pub kernel: Kernel,
    /// `size_of` the Rust struct.
    pub size: usize,
    /// Its fields in declaration order, each with its `offset_of`.
    pub fields: &'static [(&'static str, usize)],
}

/// The parameter struct of every kernel file.
pub fn uniform_layouts() -> Vec<UniformLayout> {
    [conv::UNIFORMS, elementwise::UNIFORMS, loss::UNIFORMS, norm::UNIFORMS, optim::UNIFORMS, random::UNIFORMS].concat()
}

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

impl Memory for GpuBackend {
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
}

/// Exposes `GpuBytes`'s buffer to the kernel modules.
impl GpuBytes {
    pub(crate) fn binding(&self) -> Binding<'_> {
        Binding { buffer: self.buffer.raw(), offset: 0, size: self.len.next_multiple_of(4) as u64 }
    }
}
