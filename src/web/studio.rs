//! [`Studio`], the page's engine: a [`Session`] on one backend (WebGPU, or the CPU backend
//! compiled to wasm when WebGPU is missing or slow), one call at a time. Every long call returns
//! a Promise and yields to the browser while the backend works, so the tab stays responsive.
//! What each call does is the session's; this file only converts arguments and results.

use std::cell::RefCell;
use std::rc::Rc;

use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;

use super::js;
use super::webgpu::{open_gpu, EngineInfo};
use crate::backend::cpu::CpuBackend;
use crate::backend::gpu::GpuBackend;
use crate::checkpoint::Checkpoint;
use crate::data::mnist::Mnist;
use crate::session::{Session, Settings};

/// The session on whichever backend the page got.
enum Engine {
    Gpu(Box<Session<GpuBackend>>),
    Cpu(Box<Session<CpuBackend>>),
}

/// Runs `$body` with `$s` bound to the session, whatever its backend.
macro_rules! with_session {
    ($engine:expr, $s:ident => $body:expr) => {
        match $engine {
            Engine::Gpu($s) => {
                let $s = &mut **$s;
                $body
            }
            Engine::Cpu($s) => {
                let $s = &mut **$s;
                $body
            }
        }
    };
}

/// The page's engine. Calls are meant one at a time (the page queues them); a call made while
/// another is still running is refused with a "busy" error rather than interleaved.
#[wasm_bindgen]
pub struct Studio {
    slot: Slot,
}

/// Where the engine rests between calls: a call takes it out and puts it back when done, so an
/// async call owns it across its awaits and an overlapping call finds the slot empty.
type Slot = Rc<RefCell<Option<Engine>>>;

/// The engine taken out of its slot for one call; dropping it puts it back.
struct Claimed {
    slot: Slot,
    engine: Option<Engine>,
}

impl Drop for Claimed {
    fn drop(&mut self) {
        *self.slot.borrow_mut() = self.engine.take();
    }
}

impl std::ops::Deref for Claimed {
    type Target = Engine;
    fn deref(&self) -> &Engine {
        self.engine.as_ref().expect("held until dropped")
    }
}

impl std::ops::DerefMut for Claimed {
    fn deref_mut(&mut self) -> &mut Engine {
        self.engine.as_mut().expect("held until dropped")
    }
}

/// The engine for the duration of one call, or the "busy" error.
fn claim(slot: &Slot) -> Result<Claimed, JsValue> {
    let engine = slot.borrow_mut().take().ok_or_else(|| js::error("the engine is busy with another call"))?;
    Ok(Claimed { slot: slot.clone(), engine: Some(engine) })
}

/// Runs an async call on the engine as a Promise: Rust futures handed to JS must own what they
/// use, so the call holds the engine until it settles.
fn on_engine<T, F, Fut>(slot: &Slot, call: F) -> js_sys::Promise
where
    T: Into<JsValue>,
    F: FnOnce(Claimed) -> Fut + 'static,
    Fut: std::future::Future<Output = Result<T, JsValue>> + 'static,
{
    let claimed = claim(slot);
    future_to_promise(async move { call(claimed?).await.map(Into::into) })
}

/// The Promise of one async session call that yields bytes (resolving to a `Uint8Array`).
macro_rules! bytes_call {
    ($studio:ident, $s:ident => $call:expr) => {
        on_engine(&$studio.slot, move |mut engine| async move {
            let bytes = with_session!(&mut *engine, $s => $call.await).map_err(js::error)?;
            Ok(js_sys::Uint8Array::from(&bytes[..]))
        })
    };
}

/// The page's sampling options, or a rejected Promise saying what is wrong with them.
macro_rules! sample_options {
    ($options:expr) => {
        match js::sample_options($options) {
            Ok(options) => options,
            Err(e) => return js_sys::Promise::reject(&js::error(e)),
        }
    };
}

#[wasm_bindgen]
impl Studio {
    /// Opens the engine on WebGPU (or, with `cpu`, on the CPU backend) with the run in
    /// `checkpoint` (safetensors bytes). Rejects with a message a person can act on.
    pub async fn open(cpu: bool, checkpoint: Vec<u8>) -> Result<Studio, JsValue> {
        let saved = Checkpoint::from_bytes(&checkpoint).map_err(js::error)?;
        let engine = if cpu {
            Engine::Cpu(Box::new(Session::new(CpuBackend::new(), saved)))
        } else {
            Engine::Gpu(Box::new(Session::new(GpuBackend::new(open_gpu().await?), saved)))
        };
        Ok(Studio { slot: Rc::new(RefCell::new(Some(engine))) })
    }

    /// The WebGPU adapter: `{ name, backend, device_type, driver, is_fallback }`, or null on
    /// the CPU backend.
    pub fn adapter(&self) -> Result<JsValue, JsValue> {
        let engine = claim(&self.slot)?;
        match &*engine {
            Engine::Gpu(s) => js::to_value(&EngineInfo::from(s.backend().context().adapter.clone())),
            Engine::Cpu(_) => Ok(JsValue::NULL),
        }
    }

    /// Where the run stands: step, K, widths, parameter count, recipe, loss, batch, N(k), mu(k).
    pub fn status(&self) -> Result<JsValue, JsValue> {
        let mut engine = claim(&self.slot)?;
        js::to_value(&with_session!(&mut *engine, s => s.status()))
    }

    /// Replaces the run with the checkpoint in `bytes` (checked; on error nothing changes).
    pub fn load(&self, bytes: &[u8]) -> Result<(), JsValue> {
        let saved = Checkpoint::from_bytes(bytes).map_err(js::error)?;
        let mut engine = claim(&self.slot)?;
        with_session!(&mut *engine, s => s.load(saved));
        Ok(())
    }

    /// Starts a new run at step 0 from the page's settings
    /// `{ widths, recipe, loss?, totalSteps, batch, lr, seed, conditional? }`.
    pub fn restart(&self, settings: JsValue) -> Result<(), JsValue> {
        let settings: Settings = serde_wasm_bindgen::from_value(settings).map_err(JsValue::from)?;
        let mut engine = claim(&self.slot)?;
        with_session!(&mut *engine, s => s.restart(&settings)).map_err(js::error)
    }

    /// Gives the engine MNIST's training set: the bytes of the images and labels IDX files
    /// (plain or gzipped), checked. Returns the number of digits.
    pub fn set_training_data(&self, images: &[u8], labels: &[u8]) -> Result<u32, JsValue> {
        let mnist = Mnist::from_idx_bytes(images, labels).map_err(js::error)?;
        let mut engine = claim(&self.slot)?;
        Ok(with_session!(&mut *engine, s => s.set_training_data(mnist)) as u32)
    }

    /// Takes `steps` training steps in one submission; resolves to their mean loss. On a
    /// non-finite loss or a GPU failure it rejects, and the run is back at its last good state.
    pub fn train(&self, steps: u32) -> js_sys::Promise {
        on_engine(&self.slot, move |mut engine| async move {
            with_session!(&mut *engine, s => s.train(steps).await).map_err(js::error)
        })
    }

    /// Reads the whole state back (it becomes the last good state a failure returns to) and
    /// resolves to the checkpoint file's bytes (a `Uint8Array`).
    pub fn snapshot(&self) -> js_sys::Promise {
        bytes_call!(self, s => s.snapshot())
    }

    /// `count` samples from the EMA weights; resolves to their 28x28 gray levels (a
    /// `Uint8Array` of `count * 784`). The same seed gives the same digits on every backend.
    /// `options` (all optional): `{ timePoints, digit, teacher: { solver, steps } }`: one step
    /// from T then one more per time point (descending, in (eps, T)); the digit of a
    /// class-conditional model; or, with `teacher`, the run's diffusion teacher integrating its
    /// ODE from the same noise ("heun" or "euler", `steps` steps).
    pub fn sample(&self, count: u32, seed: u32, options: JsValue) -> js_sys::Promise {
        let options = sample_options!(options);
        bytes_call!(self, s => s.sample(0..count as usize, seed as u64, &options))
    }

    /// Digits `start..end` of the batch `sample` would draw with this seed and options: how
    /// the CPU workers share one sampling call. Resolves to their gray levels.
    pub fn sample_rows(&self, start: u32, end: u32, seed: u32, options: JsValue) -> js_sys::Promise {
        let options = sample_options!(options);
        bytes_call!(self, s => s.sample(start as usize..end as usize, seed as u64, &options))
    }

    /// The digits the project's MNIST classifier reads in `gray` (28x28 gray levels one after
    /// another), on this engine's backend: resolves to a `Uint8Array` of classes 0-9. The
    /// classifier is loaded at the first call and kept.
    pub fn classify(&self, gray: Vec<u8>) -> js_sys::Promise {
        bytes_call!(self, s => async { s.classify(&gray).await.map(|reading| reading.classes) })
    }

    /// The live readout: what the classifier reads in `gray`, samples of the run at its current
    /// step. Resolves to `{ step, count, legible, shares }` (legible: the share read with p >=
    /// 0.9, 0 to 1; shares: each digit's, in percent), which the run keeps: `snapshot` writes
    /// its readings into the file, `readouts` lists them.
    pub fn read_legibility(&self, gray: Vec<u8>) -> js_sys::Promise {
        on_engine(&self.slot, move |mut engine| async move {
            let readout = with_session!(&mut *engine, s => s.read_legibility(&gray).await).map_err(js::error)?;
            js::to_value(&readout)
        })
    }

    /// The readings taken along the run (`read_legibility`), oldest first.
    pub fn readouts(&self) -> Result<JsValue, JsValue> {
        let mut engine = claim(&self.slot)?;
        js::to_value(&with_session!(&mut *engine, s => s.readouts().to_vec()))
    }

    /// Data-parallel training, first half: samples `start..end` of the next step's batch.
    /// Resolves to `{ loss, gradient }`: their share of the batch's mean loss and the gradient
    /// of that share (a `Float32Array` over every weight). Gradients of disjoint slices add up
    /// to the whole batch's.
    pub fn gradients(&self, start: u32, end: u32) -> js_sys::Promise {
        on_engine(&self.slot, move |mut engine| async move {
            let rows = start as usize..end as usize;
            let (loss, gradient) = with_session!(&mut *engine, s => s.gradients(rows).await).map_err(js::error)?;
            js::object(&[("loss", loss.into()), ("gradient", js_sys::Float32Array::from(&gradient[..]).into())])
        })
    }

    /// Data-parallel training, second half: the step taken with the sum of every slice's
    /// gradient and loss, the same on every worker so their weights stay identical. A
    /// non-finite loss stops training and the run is back at its last good state.
    pub fn apply_gradients(&self, gradient: &[f32], loss: f32) -> Result<(), JsValue> {
        let mut engine = claim(&self.slot)?;
        with_session!(&mut *engine, s => s.apply_gradients(gradient, loss)).map_err(js::error)
    }

    /// Inpainting (Algorithm 4, A = identity): `gray` digits (28x28 gray levels each) redone
    /// where `keep` (one byte per pixel) is 0 and kept bit for bit where it is 1. Resolves to
    /// the given digits followed by the results.
    pub fn inpaint(&self, gray: Vec<u8>, keep: Vec<u8>, seed: u32) -> js_sys::Promise {
        bytes_call!(self, s => s.inpaint(&gray, &keep, seed as u64))
    }

    /// Super-resolution (Algorithm 4 with per-tile means): each digit averaged to 14x14
    /// (`factor` 2) or 7x7 (4), then detail generated that keeps those means. Resolves to the
    /// low-resolution digits (upsampled) followed by the results.
    pub fn super_resolve(&self, gray: Vec<u8>, factor: u32, seed: u32) -> js_sys::Promise {
        bytes_call!(self, s => s.super_resolve(&gray, factor as usize, seed as u64))
    }

    /// Denoising: each digit noised to `sigma` (in [eps, T]) and mapped back by one evaluation.
    /// Resolves to the noisy digits followed by the results.
    pub fn denoise(&self, gray: Vec<u8>, sigma: f64, seed: u32) -> js_sys::Promise {
        bytes_call!(self, s => s.denoise(&gray, sigma, seed as u64))
    }

    /// SDEdit: rough strokes noised to `t_start`, then mapped to digits. Resolves to the
    /// strokes followed by the results.
    pub fn sdedit(&self, gray: Vec<u8>, t_start: f64, seed: u32) -> js_sys::Promise {
        bytes_call!(self, s => s.sdedit(&gray, t_start, seed as u64))
    }

    /// `count` digits along the spherical interpolation between the noises of two seeds.
    pub fn interpolate(&self, seed_a: u32, seed_b: u32, count: u32) -> js_sys::Promise {
        bytes_call!(self, s => s.interpolate(seed_a as u64, seed_b as u64, count as usize))
    }

    /// The consistency property, seen: training digit `index` noised to `count` times from eps
    /// to T with one noise draw of `seed`, and the model's f(x_t, t) under each. Resolves to
    /// `{ times, gray }`: the times and the gray levels of the noised digits (scaled for
    /// display) followed by the mapped ones (`2 * count * 784` bytes).
    pub fn trajectory(&self, index: u32, seed: u32, count: u32) -> js_sys::Promise {
        on_engine(&self.slot, move |mut engine| async move {
            let (times, gray) =
                with_session!(&mut *engine, s => s.trajectory(index as usize, seed as u64, count as usize).await)
                    .map_err(js::error)?;
            js::object(&[("times", js::array(&times).into()), ("gray", js_sys::Uint8Array::from(&gray[..]).into())])
        })
    }

    /// Multistep sampling (Algorithm 1) frame by frame for `count` digits of `seed` and the
    /// sample options (`timePoints`, `digit`): the noise, f of it, then per time point the
    /// re-noised digits and f of them. Resolves to `{ captions, gray }` (a frame of `count *
    /// 784` bytes per caption).
    pub fn multistep(&self, count: u32, seed: u32, options: JsValue) -> js_sys::Promise {
        let options = sample_options!(options);
        on_engine(&self.slot, move |mut engine| async move {
            let (captions, gray) =
                with_session!(&mut *engine, s => s.multistep(count as usize, seed as u64, &options).await)
                    .map_err(js::error)?;
            js::object(&[
                ("captions", js::array(&captions).into()),
                ("gray", js_sys::Uint8Array::from(&gray[..]).into()),
            ])
        })
    }

    /// The running recipe's schedule: `{ step, totalSteps, grid, steps, discretization, mu }`,
    /// the Karras grid at the current step and N(k), mu(k) at 60 steps over K.
    pub fn schedule(&self) -> Result<JsValue, JsValue> {
        let mut engine = claim(&self.slot)?;
        js::to_value(&with_session!(&mut *engine, s => s.schedule()))
    }
}
