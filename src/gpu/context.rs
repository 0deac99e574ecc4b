//! Opening a wgpu device: the same code natively (Vulkan, Metal or DX12; Mesa's lavapipe on CI
//! machines without a GPU) and in the browser (WebGPU).

use std::sync::{Arc, Mutex};

use crate::{Error, Result};

/// What the adapter says about itself, for the page, the CLI and benchmark logs.
#[derive(Clone, Debug)]
pub struct AdapterSummary {
    pub name: String,
    pub backend: String,
    pub device_type: String,
    pub driver: String,
    /// A software implementation (lavapipe, SwiftShader, WARP): correct but slow.
    pub is_fallback: bool,
}

impl std::fmt::Display for AdapterSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}, {}", self.name, self.backend, self.device_type)?;
        if !self.driver.is_empty() {
            write!(f, ", {}", self.driver)?;
        }
        write!(f, ")")
    }
}

pub struct GpuContext {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub adapter: AdapterSummary,
    pub limits: wgpu::Limits,
    /// The first uncaptured validation/out-of-memory error or device loss, if any. Checked at
    /// every readback so a failure surfaces as an error instead of silently wrong numbers.
    failure: Arc<Mutex<Option<String>>>,
}

/// The limits we ask for: WebGPU's defaults, which both lavapipe and Chrome's SwiftShader
/// adapter exceed (8 storage buffers per stage, 256 invocations per workgroup, 16 KiB of
/// workgroup memory, 4 bind groups), plus the adapter's own buffer-size limits so large
/// batches fit where the hardware allows.
pub fn required_limits(adapter: &wgpu::Limits) -> wgpu::Limits {
    wgpu::Limits {
        max_buffer_size: adapter.max_buffer_size,
        max_storage_buffer_binding_size: adapter.max_storage_buffer_binding_size,
        ..wgpu::Limits::default()
    }
}

impl GpuContext {
    /// Opens the best adapter available (a hardware one when there is one).
    pub async fn new() -> Result<Self> {
        let backends =
            if cfg!(target_arch = "wasm32") { wgpu::Backends::BROWSER_WEBGPU } else { wgpu::Backends::PRIMARY };
        let instance = wgpu::Instance::new(wgpu::InstanceDescriptor {
            backends,
            ..wgpu::InstanceDescriptor::new_without_display_handle_from_env()
        });
        let adapter = instance
            .request_adapter(&wgpu::RequestAdapterOptions {
                power_preference: wgpu::PowerPreference::HighPerformance,
                ..Default::default()
            })
            .await
            .map_err(|e| Error::NoAdapter(e.to_string()))?;
        let info = adapter.get_info();
        let limits = required_limits(&adapter.limits());
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("consistency"),
                required_features: wgpu::Features::empty(),
                required_limits: limits.clone(),
                ..Default::default()
            })
            .await
            .map_err(|e| Error::Device(e.to_string()))?;

        let failure = Arc::new(Mutex::new(None::<String>));
        let on_error = failure.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            on_error.lock().unwrap().get_or_insert_with(|| e.to_string());
        }));
        let on_lost = failure.clone();
        device.set_device_lost_callback(move |reason, message| {
            on_lost.lock().unwrap().get_or_insert_with(|| format!("device lost ({reason:?}): {message}"));
        });

        let is_fallback = info.device_type == wgpu::DeviceType::Cpu;
        let adapter = AdapterSummary {
            name: info.name,
            backend: format!("{:?}", info.backend),
            device_type: format!("{:?}", info.device_type),
            driver: [info.driver, info.driver_info]
                .iter()
                .filter(|s| !s.is_empty())
                .cloned()
                .collect::<Vec<_>>()
                .join(" "),
            is_fallback,
        };
        Ok(GpuContext { device, queue, adapter, limits, failure })
    }

    /// [`GpuContext::new`], waited for on this thread.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn new_blocking() -> Result<Self> {
        pollster::block_on(Self::new())
    }

    /// The first GPU failure seen so far, as an error.
    pub fn check(&self) -> Result<()> {
        match self.failure.lock().unwrap().as_ref() {
            Some(message) => Err(Error::Gpu(message.clone())),
            None => Ok(()),
        }
    }
}
