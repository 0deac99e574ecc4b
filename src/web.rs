//! The browser binding (wasm-bindgen): the only module that touches web-sys.
//!
//! The page (`www/index.html`) loads the module through Trunk's generated loader, which runs
//! [`start`] and then exposes the exports below to the page's script as `window.wasmBindings`.

use serde::Serialize;
use wasm_bindgen::prelude::*;

use crate::backend::cpu::CpuBackend;
use crate::backend::gpu::GpuBackend;
use crate::gpu::context::AdapterSummary;
use crate::gpu::GpuContext;
use crate::selftest;
use crate::Error;

/// What a person sees when the browser has no WebGPU at all.
const NO_WEBGPU: &str = "This page needs WebGPU: Chrome/Edge 113+, or Firefox/Safari with WebGPU enabled \
     (and a page served over https or from localhost). This browser has no navigator.gpu.";

/// Runs once, when the module is instantiated: panics go to the console with a stack trace.
#[wasm_bindgen(start)]
pub fn start() {
    console_error_panic_hook::set_once();
}

/// The adapter as the page sees it: `{ name, backend, device_type, driver, is_fallback }`.
#[derive(Serialize)]
struct EngineInfo {
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

/// Opens the GPU device and describes its adapter; rejects with a message a person can act on
/// (an `Error` object) when WebGPU is missing or no adapter or device can be had.
#[wasm_bindgen]
pub async fn engine_info() -> Result<JsValue, JsValue> {
    if !has_navigator_gpu() {
        return Err(js_sys::Error::new(NO_WEBGPU).into());
    }
    let context = GpuContext::new().await.map_err(|e| {
        let message = match e {
            Error::NoAdapter(detail) => {
                web_sys::console::warn_1(&JsValue::from_str(&format!("requestAdapter: {detail}")));
                "WebGPU is present, but the browser offers no adapter: the GPU may be blocklisted \
                 (see chrome://gpu) or WebGPU turned off for it in the browser's settings."
                    .to_string()
            }
            other => other.to_string(),
        };
        JsValue::from(js_sys::Error::new(&message))
    })?;
    let info = EngineInfo::from(context.adapter.clone());
    serde_wasm_bindgen::to_value(&info).map_err(JsValue::from)
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
    if !has_navigator_gpu() {
        return Err(js_sys::Error::new(NO_WEBGPU).into());
    }
    let to_js = |e: Error| JsValue::from(js_sys::Error::new(&e.to_string()));
    let gpu = GpuBackend::new(GpuContext::new().await.map_err(to_js)?);
    let checks = selftest::run(&gpu, &CpuBackend::new()).await.map_err(to_js)?;
    let results: Vec<CheckResult> = checks
        .iter()
        .map(|c| CheckResult { name: c.name.clone(), error: c.error, tolerance: c.tolerance, passed: c.passed() })
        .collect();
    serde_wasm_bindgen::to_value(&results).map_err(JsValue::from)
}
