//! WebGPU in this browser: whether it is there, opening its device with a message a person can
//! act on when it is not, the adapter as the page describes it, and the kernels' self-check.

use serde::Serialize;
use wasm_bindgen::prelude::*;

use super::js;
use crate::backend::cpu::CpuBackend;
use crate::backend::gpu::GpuBackend;
use crate::gpu::context::AdapterSummary;
use crate::gpu::GpuContext;
use crate::{selftest, Error};

/// Where WebGPU works, for every message about its absence.
const WHERE_WEBGPU_WORKS: &str = "WebGPU works in Chrome or Edge 113+ on Windows, macOS and ChromeOS (on Linux \
     and Android in recent versions on supported GPUs, or with chrome://flags/#enable-unsafe-webgpu), Safari 26+, \
     and Firefox 141+ on Windows (elsewhere with dom.webgpu.enabled in about:config), on a page served over https \
     or from localhost.";

/// What a person sees when the browser has no WebGPU at all.
const NO_WEBGPU: &str = "This browser has no WebGPU (navigator.gpu is missing).";

/// What a person sees when WebGPU is there but gives no adapter.
const NO_ADAPTER: &str = "WebGPU is present, but the browser offers no adapter: the GPU may be blocklisted \
     (see chrome://gpu) or WebGPU turned off for it in the browser's settings.";

/// The adapter as the page sees it: `{ name, backend, device_type, driver, is_fallback }`.
#[derive(Serialize)]
pub struct EngineInfo {
    name: String,
    backend: String,
    device_type: String,
    driver: String,
    is_fallback: bool,
}

impl From<AdapterSummary> for EngineInfo {
    fn from(a: AdapterSummary) -> Self {
        EngineInfo {
            name: a.name,
            backend: a.backend,
            device_type: a.device_type,
            driver: a.driver,
            is_fallback: a.is_fallback,
        }
    }
}

/// Whether `navigator.gpu` exists (it is missing without WebGPU, and outside secure contexts).
fn has_navigator_gpu() -> bool {
    let global = js_sys::global();
    js_sys::Reflect::get(&global, &JsValue::from_str("navigator"))
        .ok()
        .filter(|navigator| navigator.is_object())
        .and_then(|navigator| js_sys::Reflect::get(&navigator, &JsValue::from_str("gpu")).ok())
        .is_some_and(|gpu| !gpu.is_undefined() && !gpu.is_null())
}

/// Opens the GPU device, or says what a person can do about it.
pub async fn open_gpu() -> Result<GpuContext, JsValue> {
    if !has_navigator_gpu() {
        return Err(js::error(format!("{NO_WEBGPU} {WHERE_WEBGPU_WORKS}")));
    }
    GpuContext::new().await.map_err(|e| match e {
        Error::NoAdapter(detail) => {
            web_sys::console::warn_1(&JsValue::from_str(&format!("requestAdapter: {detail}")));
            js::error(format!("{NO_ADAPTER} {WHERE_WEBGPU_WORKS}"))
        }
        other => js::error(other),
    })
}

/// One line of the engine self-check, as the page sees it.
#[derive(Serialize)]
struct CheckResult {
    name: String,
    error: f32,
    tolerance: f32,
    passed: bool,
}

/// Runs [`crate::selftest`]: the GPU kernels on this browser's WebGPU against the CPU backend
/// compiled to wasm. Resolves to `[{ name, error, tolerance, passed }]`.
#[wasm_bindgen]
pub async fn engine_selftest() -> Result<JsValue, JsValue> {
    let gpu = GpuBackend::new(open_gpu().await?);
    let checks = selftest::run(&gpu, &CpuBackend::new()).await.map_err(js::error)?;
    let results: Vec<CheckResult> = checks
        .iter()
        .map(|c| CheckResult { name: c.name.clone(), error: c.error, tolerance: c.tolerance, passed: c.passed() })
        .collect();
    js::to_value(&results)
}
