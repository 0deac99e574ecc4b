//! The edits of section 7 on a session's sampling weights: inpainting, super-resolution,
//! denoising, SDEdit and interpolation. Each takes digits as gray levels and returns what the
//! model was given (for display) followed by the result.

use super::Session;
use crate::backend::{BTensor, Backend};
use crate::eval::classifier::to_model_range;
use crate::{edit, image, noise, Error, Result};

/// Pixels of a digit.
const PIXELS: usize = image::SIDE * image::SIDE;

/// Checks that `gray` is whole 28x28 digits and returns how many.
pub(super) fn digit_count(what: &str, gray: &[u8]) -> Result<usize> {
    if gray.is_empty() || !gray.len().is_multiple_of(PIXELS) {
        return Err(Error::Invalid(format!("{what}: {} gray levels are not whole 28x28 digits", gray.len())));
    }
    Ok(gray.len() / PIXELS)
}

/// Each `factor` x `factor` tile of 28x28 digits replaced by its mean: the low-resolution digit
/// (`[N, 28 / factor, 28 / factor]`) and its nearest-neighbour upsampling, for display.
fn tile_means(digits: &[f32], factor: usize) -> (Vec<f32>, Vec<f32>) {
    let side = image::SIDE / factor;
    let mut low = vec![0.0; digits.len() / (factor * factor)];
    let mut shown = vec![0.0; digits.len()];
    for (n, digit) in digits.chunks_exact(PIXELS).enumerate() {
        for (i, v) in digit.iter().enumerate() {
            let (y, x) = (i / image::SIDE, i % image::SIDE);
            low[n * side * side + (y / factor) * side + x / factor] += v / (factor * factor) as f32;
        }
        for (i, v) in shown[n * PIXELS..(n + 1) * PIXELS].iter_mut().enumerate() {
            let (y, x) = (i / image::SIDE, i % image::SIDE);
            *v = low[n * side * side + (y / factor) * side + x / factor];
        }
    }
    (low, shown)
}

impl<B: Backend> Session<B> {
    fn upload_digits(&self, what: &str, gray: &[u8]) -> Result<BTensor<B>> {
        let n = digit_count(what, gray)?;
        Ok(self.be.upload(&to_model_range(gray), &[n, 1, image::SIDE, image::SIDE]))
    }

    async fn given_and_result(&self, given: &[u8], result: &BTensor<B>) -> Result<Vec<u8>> {
        let mut out = given.to_vec();
        out.extend(image::to_gray(&self.be.read(result).await?));
        Ok(out)
    }

    /// Inpainting (Algorithm 4, A = identity): `gray` digits redone where `keep` (one byte per
    /// pixel) is 0 and kept bit for bit where it is 1.
    pub async fn inpaint(&mut self, gray: &[u8], keep: &[u8], seed: u64) -> Result<Vec<u8>> {
        let y = self.upload_digits("digits", gray)?;
        let n = digit_count("keep mask", keep)?;
        let keep_mask: Vec<f32> = keep.iter().map(|&k| if k > 0 { 1.0 } else { 0.0 }).collect();
        let keep_tensor = self.be.upload(&keep_mask, &[n, 1, image::SIDE, image::SIDE]);
        let params = self.sampling_weights().clone();
        let x = edit::inpaint(&self.be, &self.model, &params, &y, &keep_tensor, edit::INPAINT_TIME_POINTS, seed)?;
        self.given_and_result(gray, &x).await
    }

    /// Super-resolution (Algorithm 4 with per-tile means): each digit averaged to 14x14
    /// (`factor` 2) or 7x7 (4), then detail generated that keeps those means. Gives the
    /// low-resolution digits (upsampled) followed by the results.
    pub async fn super_resolve(&mut self, gray: &[u8], factor: usize, seed: u64) -> Result<Vec<u8>> {
        let n = digit_count("digits", gray)?;
        if factor != 2 && factor != 4 {
            return Err(Error::Invalid(format!("super-resolution is from 14x14 (factor 2) or 7x7 (4), not {factor}")));
        }
        let (low, shown) = tile_means(&to_model_range(gray), factor);
        let side = image::SIDE / factor;
        let low = self.be.upload(&low, &[n, 1, side, side]);
        let params = self.sampling_weights().clone();
        let x = edit::super_resolve(&self.be, &self.model, &params, &low, edit::SUPER_RESOLVE_TIME_POINTS, seed)?;
        self.given_and_result(&image::to_gray(&shown), &x).await
    }

    /// Noises the digits to `sigma` (`y = x + sigma z`, z from the seed) and denoises them in
    /// one evaluation.
    pub async fn denoise(&mut self, gray: &[u8], sigma: f64, seed: u64) -> Result<Vec<u8>> {
        let x = self.upload_digits("digits", gray)?;
        let noisy = noise::noised(&self.be, Some(&x), &x.shape, sigma, seed, 0);
        let params = self.sampling_weights().clone();
        let out = edit::denoise(&self.be, &self.model, &params, &noisy, sigma)?;
        let given = image::to_gray(&self.be.read(&noisy).await?);
        self.given_and_result(&given, &out).await
    }

    /// SDEdit: rough strokes noised to `t_start`, then mapped to digits.
    pub async fn sdedit(&mut self, gray: &[u8], t_start: f64, seed: u64) -> Result<Vec<u8>> {
        let strokes = self.upload_digits("strokes", gray)?;
        let later: Vec<f64> = edit::SDEDIT_TIME_POINTS.iter().copied().filter(|&t| t < t_start).collect();
        let params = self.sampling_weights().clone();
        let x = edit::sdedit(&self.be, &self.model, &params, &strokes, t_start, &later, seed)?;
        self.given_and_result(gray, &x).await
    }

    /// `count` digits along the spherical interpolation between the noises of two seeds (only
    /// the results: nothing is given).
    pub async fn interpolate(&mut self, seed_a: u64, seed_b: u64, count: usize) -> Result<Vec<u8>> {
        let alphas: Vec<f64> = (0..count).map(|i| i as f64 / (count.max(2) - 1) as f64).collect();
        let params = self.sampling_weights().clone();
        let x = edit::interpolate(&self.be, &self.model, &params, seed_a, seed_b, &alphas)?;
        Ok(image::to_gray(&self.be.read(&x).await?))
    }
}
