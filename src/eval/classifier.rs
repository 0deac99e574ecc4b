//! Reading the MNIST classifier's outputs ([`crate::nn::classifier`]): digits in the model's
//! range, the top class and its probability, and the accuracy on a labelled set. Its training
//! is [`crate::train::classifier`].

use crate::backend::{BTensor, Backend};
use crate::data::mnist::{Mnist, CLASSES};
use crate::image::{digit_shape, PIXELS};
use crate::nn::classifier::Classifier;

/// Digits of a u8 dataset as the classifier (and the consistency model) sees them:
/// `(2 b - 255) / 255`, the expression of `gather_rows`, so host and device agree bit for bit.
pub fn to_model_range(bytes: &[u8]) -> Vec<f32> {
    bytes.iter().map(|&b| (2.0 * b as f32 - 255.0) * (1.0 / 255.0)).collect()
}

/// Index of the largest logit of each row of `logits` (`[N, 10]`, row-major).
pub fn argmax_rows(logits: &[f32]) -> Vec<u8> {
    logits
        .chunks_exact(CLASSES)
        .map(|row| {
            let mut best = 0;
            for (j, &z) in row.iter().enumerate() {
                if z > row[best] {
                    best = j;
                }
            }
            best as u8
        })
        .collect()
}

/// The softmax probability of the largest logit of each row of `logits` (`[N, 10]`): how sure
/// the classifier is of the digit it reads. Computed stably, relative to the row's maximum.
pub fn top_probability_rows(logits: &[f32]) -> Vec<f32> {
    logits
        .chunks_exact(CLASSES)
        .map(|row| {
            let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let total: f32 = row.iter().map(|&z| (z - max).exp()).sum();
            1.0 / total
        })
        .collect()
}

/// Images per forward pass when classifying a whole set: bounded memory on any backend.
pub const CHUNK: usize = 500;

/// Fraction of `data` the classifier with weights `params` labels correctly, in chunks of
/// [`CHUNK`].
pub async fn accuracy<B: Backend>(be: &B, net: &Classifier, params: &BTensor<B>, data: &Mnist) -> crate::Result<f64> {
    let mut correct = 0usize;
    for start in (0..data.count).step_by(CHUNK) {
        let n = CHUNK.min(data.count - start);
        let pixels = to_model_range(&data.images[start * PIXELS..(start + n) * PIXELS]);
        let x = be.upload(&pixels, &digit_shape(n));
        let logits = be.read(&net.forward(be, params, &x).logits).await?;
        correct += argmax_rows(&logits).iter().zip(&data.labels[start..start + n]).filter(|(p, l)| p == l).count();
    }
    Ok(correct as f64 / data.count as f64)
}
