//! The browser binding (wasm-bindgen): the only module that touches web-sys and JS values.
//!
//! The page (`www/app.js`) loads the module through Trunk's generated loader, which runs
//! [`start`] and then exposes the exports to the page's script as `window.wasmBindings`:
//!
//! - [`Studio`] (`studio.rs`): the page's engine, a [`crate::session::Session`] on WebGPU or on
//!   the CPU backend compiled to wasm, one call at a time, each long call a Promise;
//! - [`engine_selftest`] and the WebGPU detection behind every message about its absence
//!   (`webgpu.rs`);
//! - [`constants`] and [`evaluations`]: the numbers the page shows and asks with, from the Rust
//!   that uses them, so the page re-types none of them;
//! - [`memory_bytes`]: the module's memory, which the Engine panel and the soak watch;
//! - `js.rs`: conversions between JS values and the session's types.

mod js;
mod studio;
mod webgpu;

use std::collections::BTreeMap;

use serde::Serialize;
use wasm_bindgen::prelude::*;

use crate::ode::{self, Solver};
use crate::schedule::{EPS, SIGMA_DATA, T};
use crate::session::TIME_POINTS;
use crate::vocabulary::Named;
pub use studio::Studio;
pub use webgpu::engine_selftest;

/// Runs once, when the module is instantiated: panics go to the console with a stack trace.
#[wasm_bindgen(start)]
pub fn start() {
    console_error_panic_hook::set_once();
}

/// See [`constants`].
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Constants {
    #[serde(rename = "T")]
    t: f64,
    eps: f64,
    sigma_data: f64,
    /// Keyed by the number of steps, as the page's Steps controls give it.
    time_points: BTreeMap<String, &'static [f64]>,
}

/// The numbers of the method: `{ T, eps, sigmaData, timePoints }`, where `timePoints[steps]`
/// are Algorithm 1's refinement times after the first step for 1, 2 and 4 steps.
#[wasm_bindgen]
pub fn constants() -> Result<JsValue, JsValue> {
    let constants = Constants {
        t: T,
        eps: EPS,
        sigma_data: SIGMA_DATA,
        time_points: TIME_POINTS.iter().map(|&(steps, points)| (steps.to_string(), points)).collect(),
    };
    // JSON-compatible: the map becomes a plain object, not a JS Map.
    constants.serialize(&serde_wasm_bindgen::Serializer::json_compatible()).map_err(JsValue::from)
}

/// Network evaluations of the ODE sampler with `solver` ("heun" or "euler") and `steps` steps
/// (Heun's last step is an Euler step: 18 steps take 35).
#[wasm_bindgen]
pub fn evaluations(solver: &str, steps: u32) -> Result<u32, JsValue> {
    let solver = Solver::parse(solver).map_err(js::error)?;
    Ok(ode::evaluations(solver, steps as usize) as u32)
}

/// The bytes of this instance's linear memory (the page's, or one CPU worker's): it holds the
/// run, MNIST and every buffer, and grows but never shrinks, so a leak shows as growth here.
#[wasm_bindgen(js_name = memoryBytes)]
pub fn memory_bytes() -> f64 {
    (core::arch::wasm32::memory_size(0) * 65536) as f64
}
