//! The classifier's weights as a safetensors file: one little-endian f32 tensor per parameter,
//! named as in the [`Classifier`]'s layout, plus metadata (architecture, test accuracy, seed,
//! steps). The shipped file, `assets/mnist-classifier.safetensors`, is embedded in the library
//! ([`SHIPPED`]) so the CLI and the page need no file access.
//!
//! Files are untrusted input: loading checks the header, every name, shape and dtype against the
//! architecture, and returns [`crate::Error::Invalid`] naming what is wrong; it never panics.

use std::collections::BTreeMap;

use safetensors::SafeTensors;

use super::Classifier;
use crate::nn::weights_file::{self, Flaw};
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
    let metadata = [
        ("architecture", info.architecture.clone()),
        ("test_accuracy", format!("{}", info.test_accuracy)),
        ("seed", info.seed.to_string()),
        ("steps", info.steps.to_string()),
        ("format", "f32 little-endian, one tensor per parameter".to_string()),
    ];
    let metadata = metadata.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
    weights_file::write(&net.layout, &[("", params)], metadata)
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
    let flat = weights_file::read(&file, &net.layout, "").map_err(|(name, flaw, shape)| {
        invalid(match flaw {
            Flaw::Missing => format!("tensor '{name}' is missing"),
            Flaw::Dtype(dtype) => format!("tensor '{name}' has dtype {dtype:?}, expected F32"),
            Flaw::Shape(found) => format!("tensor '{name}' has shape {found:?}, expected {shape:?}"),
            Flaw::NonFinite(i) => format!("tensor '{name}' holds a non-finite value at {i}"),
        })
    })?;
    Ok((flat, info))
}
