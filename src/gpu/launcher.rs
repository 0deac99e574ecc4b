//! Launching compute shaders cheaply and in order.
//!
//! - **Pipelines** are compiled once per kernel and cached.
//! - **Buffers** come from a pool keyed by size: a training step allocates the same shapes every
//!   time, so after the first step no buffer is created. A buffer returns to the pool when its
//!   last tensor is dropped; reusing it right away is safe because every use is recorded in
//!   order on one queue.
//! - **Recording**: every dispatch, upload and copy goes into one command encoder (one open
//!   compute pass), submitted only by [`Launcher::flush`] or a readback. A whole training step
//!   is therefore a single submission with no round trip to the CPU.
//! - **Kernel parameters** (shapes, scalars) are packed into a few large uniform buffers, one
//!   256-byte slot per dispatch, written once per submission.

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::HashMap;
use std::num::NonZeroU64;
use std::rc::{Rc, Weak};

use wgpu::util::DeviceExt;

use super::GpuContext;
use crate::{Error, Result};

/// A compute shader: WGSL source parts joined in order (a kernel may append a shared core, such
/// as the tiled GEMM loop) and its entry point. Bindings follow one convention: `@group(0)
/// @binding(0)` is the kernel's parameter struct (a uniform), then its storage buffers from 1.
#[derive(Clone, Copy, Debug)]
pub struct Kernel {
    pub name: &'static str,
    pub sources: &'static [&'static str],
    pub entry: &'static str,
}

/// One storage-buffer argument of a dispatch: a byte range of a buffer.
pub struct Binding<'a> {
    pub buffer: &'a wgpu::Buffer,
    pub offset: u64,
    pub size: u64,
}

/// A pooled GPU buffer. Usable as storage and as a copy source and destination.
pub struct GpuBuffer {
    buffer: Option<wgpu::Buffer>,
    pool: Weak<RefCell<HashMap<u64, Vec<wgpu::Buffer>>>>,
}

impl GpuBuffer {
    pub fn raw(&self) -> &wgpu::Buffer {
        self.buffer.as_ref().expect("buffer present until drop")
    }
}

impl Drop for GpuBuffer {
    fn drop(&mut self) {
        if let (Some(buffer), Some(pool)) = (self.buffer.take(), self.pool.upgrade()) {
            pool.borrow_mut().entry(buffer.size()).or_default().push(buffer);
        }
    }
}

impl std::fmt::Debug for GpuBuffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "GpuBuffer({} bytes)", self.raw().size())
    }
}

/// Bytes reserved for each dispatch's parameters (WebGPU's minimum uniform-offset alignment).
const PARAM_SLOT: u64 = 256;
/// Parameter slots per uniform buffer (64 KiB, the default max uniform binding size).
const SLOTS_PER_CHUNK: u64 = 256;

#[derive(Default)]
struct Recorder {
    encoder: Option<wgpu::CommandEncoder>,
    pass: Option<wgpu::ComputePass<'static>>,
    /// Uniform buffers for kernel parameters; `chunks[..=chunk]` are in use this submission.
    chunks: Vec<wgpu::Buffer>,
    chunk: usize,
    slot: u64,
    staged: Vec<u8>,
    dispatches: usize,
    /// Everything recorded since the launcher was made (what `cm bench` reports per step).
    totals: WorkCounts,
}

/// Work recorded by a [`Launcher`]: compute dispatches and queue submissions.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WorkCounts {
    pub dispatches: u64,
    pub submissions: u64,
}

pub struct Launcher {
    pub ctx: GpuContext,
    pipelines: RefCell<HashMap<(&'static str, &'static str), Rc<wgpu::ComputePipeline>>>,
    pool: Rc<RefCell<HashMap<u64, Vec<wgpu::Buffer>>>>,
    rec: RefCell<Recorder>,
}

impl Launcher {
    pub fn new(ctx: GpuContext) -> Self {
        Launcher { ctx, pipelines: Default::default(), pool: Default::default(), rec: Default::default() }
    }

    /// A buffer of at least `bytes` bytes (rounded up to 256 so similar sizes share the pool).
    /// Its contents are undefined.
    pub fn buffer(&self, bytes: u64) -> Rc<GpuBuffer> {
        let size = bytes.max(4).div_ceil(256) * 256;
        let reused = self.pool.borrow_mut().get_mut(&size).and_then(|v| v.pop());
        let buffer = reused.unwrap_or_else(|| {
            self.ctx.device.create_buffer(&wgpu::BufferDescriptor {
                label: None,
                size,
                usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            })
        });
        Rc::new(GpuBuffer { buffer: Some(buffer), pool: Rc::downgrade(&self.pool) })
    }

    fn pipeline(&self, kernel: &Kernel) -> Rc<wgpu::ComputePipeline> {
        let key = (kernel.name, kernel.entry);
        if let Some(p) = self.pipelines.borrow().get(&key) {
            return p.clone();
        }
        let source: String = kernel.sources.concat();
        let module = self.ctx.device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some(kernel.name),
            source: wgpu::ShaderSource::Wgsl(Cow::Owned(source)),
        });
        let pipeline = Rc::new(self.ctx.device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(kernel.name),
            layout: None,
            module: &module,
            entry_point: Some(kernel.entry),
            compilation_options: Default::default(),
            cache: None,
        }));
        self.pipelines.borrow_mut().insert(key, pipeline.clone());
        pipeline
    }

    fn with_encoder<R>(rec: &mut Recorder, device: &wgpu::Device, f: impl FnOnce(&mut wgpu::CommandEncoder) -> R) -> R {
        rec.pass = None; // a copy cannot happen inside a compute pass
        let encoder = rec.encoder.get_or_insert_with(|| device.create_command_encoder(&Default::default()));
        f(encoder)
    }

    /// Records one dispatch of `kernel` with parameter struct `params` and storage `buffers`
    /// (bindings 1, 2, ...).
    pub fn dispatch(&self, kernel: &Kernel, params: &[u8], buffers: &[Binding], workgroups: [u32; 3]) {
        assert!(params.len() as u64 <= PARAM_SLOT, "{}: parameters exceed one slot", kernel.name);
        let pipeline = self.pipeline(kernel);
        let device = &self.ctx.device;
        let mut rec = self.rec.borrow_mut();
        let rec = &mut *rec;

        // Reserve a parameter slot, moving to the next uniform buffer when this one is full.
        if rec.slot == SLOTS_PER_CHUNK {
            self.write_staged(rec);
            rec.chunk += 1;
            rec.slot = 0;
        }
        if rec.chunk == rec.chunks.len() {
            rec.chunks.push(device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("kernel parameters"),
                size: PARAM_SLOT * SLOTS_PER_CHUNK,
                usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            }));
        }
        let param_offset = rec.slot * PARAM_SLOT;
        rec.staged.extend_from_slice(params);
        rec.staged.resize(((rec.slot + 1) * PARAM_SLOT) as usize, 0);
        rec.slot += 1;

        let align = self.ctx.limits.min_storage_buffer_offset_alignment as u64;
        let mut entries = Vec::with_capacity(buffers.len() + 1);
        entries.push(wgpu::BindGroupEntry {
            binding: 0,
            resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                buffer: &rec.chunks[rec.chunk],
                offset: param_offset,
                size: NonZeroU64::new(params.len().max(16).next_multiple_of(16) as u64),
            }),
        });
        for (i, b) in buffers.iter().enumerate() {
            assert!(
                b.offset.is_multiple_of(align),
                "{}: binding {} offset {} is not {align}-byte aligned",
                kernel.name,
                i + 1,
                b.offset
            );
            entries.push(wgpu::BindGroupEntry {
                binding: i as u32 + 1,
                resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                    buffer: b.buffer,
                    offset: b.offset,
                    size: NonZeroU64::new(b.size.max(4)),
                }),
            });
        }
        let bind_group = device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(kernel.name),
            layout: &pipeline.get_bind_group_layout(0),
            entries: &entries,
        });

        if rec.pass.is_none() {
            let encoder = rec.encoder.get_or_insert_with(|| device.create_command_encoder(&Default::default()));
            rec.pass = Some(encoder.begin_compute_pass(&Default::default()).forget_lifetime());
        }
        let pass = rec.pass.as_mut().unwrap();
        pass.set_pipeline(&pipeline);
        pass.set_bind_group(0, &bind_group, &[]);
        pass.dispatch_workgroups(workgroups[0], workgroups[1], workgroups[2]);
        rec.dispatches += 1;
        rec.totals.dispatches += 1;
    }

    /// Records an upload of `data` into `dst` at byte `offset`, ordered with the dispatches
    /// (unlike `Queue::write_buffer`, which would land before everything recorded so far).
    pub fn write(&self, dst: &wgpu::Buffer, offset: u64, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        assert!(data.len().is_multiple_of(4) && offset.is_multiple_of(4));
        let staging = self.ctx.device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some("upload"),
            contents: data,
            usage: wgpu::BufferUsages::COPY_SRC,
        });
        let mut rec = self.rec.borrow_mut();
        Self::with_encoder(&mut rec, &self.ctx.device, |e| {
            e.copy_buffer_to_buffer(&staging, 0, dst, offset, data.len() as u64)
        });
    }

    /// Records a copy of `size` bytes.
    pub fn copy(&self, src: &wgpu::Buffer, src_offset: u64, dst: &wgpu::Buffer, dst_offset: u64, size: u64) {
        let mut rec = self.rec.borrow_mut();
        Self::with_encoder(&mut rec, &self.ctx.device, |e| {
            e.copy_buffer_to_buffer(src, src_offset, dst, dst_offset, size)
        });
    }

    fn write_staged(&self, rec: &mut Recorder) {
        if !rec.staged.is_empty() {
            self.ctx.queue.write_buffer(&rec.chunks[rec.chunk], 0, &rec.staged);
            rec.staged.clear();
        }
    }

    /// Submits everything recorded so far. Returns the number of dispatches it held.
    pub fn flush(&self) -> usize {
        let mut rec = self.rec.borrow_mut();
        let rec = &mut *rec;
        rec.pass = None;
        self.write_staged(rec);
        rec.chunk = 0;
        rec.slot = 0;
        let dispatches = std::mem::take(&mut rec.dispatches);
        if let Some(encoder) = rec.encoder.take() {
            self.ctx.queue.submit([encoder.finish()]);
            rec.totals.submissions += 1;
        }
        dispatches
    }

    /// Dispatches recorded and submissions made since the launcher was made.
    pub fn work_counts(&self) -> WorkCounts {
        self.rec.borrow().totals
    }

    /// Waits until the GPU has finished everything submitted (natively; in the browser, use
    /// [`Launcher::read_bytes`], which awaits).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn wait(&self) -> Result<()> {
        self.flush();
        self.ctx.device.poll(wgpu::PollType::wait_indefinitely()).map_err(|e| Error::Gpu(e.to_string()))?;
        self.ctx.check()
    }

    /// Runs everything recorded and returns `size` bytes of `src` from byte `offset`.
    pub async fn read_bytes(&self, src: &wgpu::Buffer, offset: u64, size: u64) -> Result<Vec<u8>> {
        let padded = size.max(4).next_multiple_of(4);
        let staging = self.ctx.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("readback"),
            size: padded,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        self.copy(src, offset, &staging, 0, padded);
        self.flush();
        let (tx, rx) = futures_channel::oneshot::channel();
        staging.map_async(wgpu::MapMode::Read, .., move |r| {
            let _ = tx.send(r);
        });
        #[cfg(not(target_arch = "wasm32"))]
        self.ctx.device.poll(wgpu::PollType::wait_indefinitely()).map_err(|e| Error::Gpu(e.to_string()))?;
        let mapped = rx.await.map_err(|_| Error::Gpu("readback was cancelled".into()))?;
        self.ctx.check()?;
        mapped.map_err(|e| Error::Gpu(format!("readback failed: {e}")))?;
        let bytes = staging.get_mapped_range(..).map_err(|e| Error::Gpu(e.to_string()))?[..size as usize].to_vec();
        staging.unmap();
        Ok(bytes)
    }
}
