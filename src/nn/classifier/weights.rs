//! The classifier's weights as a safetensors file: one little-endian f32 tensor per parameter,
//! named as in the [`Classifier`]'s layout, plus metadata (architecture, test accuracy, seed,
//! steps). The shipped file, `assets/mnist-classifier.safetensors`, is embedded in the library
//! ([`SHIPPED`]) so the CLI and the page need no file access.
//!
//! Files are untrusted input: loading checks the header, every name, shape and dtype against the
//! architecture, and returns [`crate::Error::Invalid`] naming what is wrong; it never panics.

use std::collections::BTreeMap;

use safetensors::{Dtype, SafeTensors};

use super::Classifier;
use crate::{Error, Result};

/// The weights shipped with the library (trained by `cm train-classifier`).
pub static SHIPPED: &[u8] = include_bytes!("../../../assets/mnist-classifier.safetensors");

/// The perceptual distance's network, shipped likewise (`cm train-classifier --network
/// perceptual`).
pub static PERCEPTUAL: &[u8] = include_bytes!("../../../assets/mnist-perceptual.safetensors");

/// What the metadata of a weights file records about its training.
#[derive(Clone, Debug, PartialEq)]
pub struct WeightsInfo {
    /// The [`super::Architecture`] name of the network the weights belong to.
    pub architecture: String,
    /// Fraction of the 10,000 MNIST test digits classified correctly.
    pub test_accuracy: f64,
    pub seed: u64,
    pub steps: u32,
}

/// The file's bytes for flat weights `params` (the layout of `net`).
pub fn save(net: &Classifier, params: &[f32], info: &WeightsInfo) -> Result<Vec<u8>> {
    if params.len() != net.layout.len {
        return Err(Error::Invalid(format!(
            "weights of {} values do not fit the classifier's layout of {}",
            params.len(),
            net.layout.len
        )));
    }
    let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = net
        .layout
        .params
        .iter()
        .map(|p| {
            let le = params[p.offset..p.offset + p.len()].iter().flat_map(|v| v.to_le_bytes()).collect();
            (p.name.clone(), p.shape.clone(), le)
        })
        .collect();
    let views = bytes
        .iter()
        .map(|(name, shape, data)| {
            safetensors::tensor::TensorView::new(Dtype::F32, shape.clone(), data).map(|v| (name.as_str(), v))
        })
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| Error::Invalid(format!("classifier weights: {e}")))?;
    let metadata = [
        ("architecture", info.architecture.clone()),
        ("test_accuracy", format!("{}", info.test_accuracy)),
        ("seed", info.seed.to_string()),
        ("steps", info.steps.to_string()),
        ("format", "f32 little-endian, one tensor per parameter".to_string()),
    ];
    safetensors::serialize(views, Some(metadata.into_iter().map(|(k, v)| (k.to_string(), v)).collect()))
        .map_err(|e| Error::Invalid(format!("classifier weights: cannot serialize: {e}")))
}

/// The flat weights (the layout of `net`) and the training info of a weights file; `source`
/// names the file in error messages.
pub fn load(net: &Classifier, bytes: &[u8], source: &str) -> Result<(Vec<f32>, WeightsInfo)> {
    let invalid = |what: String| Error::Invalid(format!("{source}: {what}"));
    let (_, header) =
        SafeTensors::read_metadata(bytes).map_err(|e| invalid(format!("not a valid safetensors file: {e}")))?;
    let file = SafeTensors::deserialize(bytes).map_err(|e| invalid(format!("not a valid safetensors file: {e}")))?;
    let meta: BTreeMap<String, String> =
        header.metadata().as_ref().map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect()).unwrap_or_default();
    let field = |key: &str| {
        meta.get(key).ok_or_else(|| invalid(format!("metadata has no '{key}' (written by cm train-classifier)")))
    };
    let architecture = field("architecture")?.clone();
    let expected_name = net.architecture.name;
    if architecture != expected_name {
        return Err(invalid(format!(
            "weights of architecture '{architecture}', but this classifier is '{expected_name}'"
        )));
    }
    let number = |key: &str| -> Result<f64> {
        let text = field(key)?;
        text.parse::<f64>().map_err(|_| invalid(format!("metadata '{key}' is '{text}', not a number")))
    };
    let info = WeightsInfo {
        architecture,
        test_accuracy: number("test_accuracy")?,
        seed: field("seed")?.parse().map_err(|_| invalid("metadata 'seed' is not an integer".into()))?,
        steps: field("steps")?.parse().map_err(|_| invalid("metadata 'steps' is not an integer".into()))?,
    };

    let expected: Vec<&str> = net.layout.params.iter().map(|p| p.name.as_str()).collect();
    if let Some(extra) = file.names().into_iter().find(|n| !expected.contains(n)) {
        return Err(invalid(format!("unexpected tensor '{extra}' (not a parameter of {expected_name})")));
    }
    let mut flat = vec![0.0f32; net.layout.len];
    for p in &net.layout.params {
        let t = file.tensor(&p.name).map_err(|_| invalid(format!("tensor '{}' is missing", p.name)))?;
        if t.dtype() != Dtype::F32 {
            return Err(invalid(format!("tensor '{}' has dtype {:?}, expected F32", p.name, t.dtype())));
        }
        if t.shape() != p.shape.as_slice() {
            return Err(invalid(format!("tensor '{}' has shape {:?}, expected {:?}", p.name, t.shape(), p.shape)));
        }
        let values = &mut flat[p.offset..p.offset + p.len()];
        // The header was validated against the buffer, so the data has exactly 4 bytes per value.
        for (v, b) in values.iter_mut().zip(t.data().chunks_exact(4)) {
            *v = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        }
        if let Some(i) = values.iter().position(|v| !v.is_finite()) {
            return Err(invalid(format!("tensor '{}' holds a non-finite value at {i}", p.name)));
        }
    }
    Ok((flat, info))
}
