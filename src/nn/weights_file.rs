//! Flat weights (the values of a [`ParamLayout`]) as a safetensors file: one F32 tensor per
//! parameter, little-endian, in the parameter's own shape and named `<prefix><parameter>`, so
//! other tools (PyTorch with the `safetensors` package, numpy) read the weights by name.
//! Checkpoints (several states, each with its prefix) and the classifier's weights (one state,
//! no prefix) are written and read here; each caller words its own errors.

use std::collections::HashMap;

use safetensors::tensor::{Dtype, SafeTensorError, SafeTensors, TensorView};

use super::ParamLayout;

/// The file's bytes: each `(prefix, values)` of `states`, values in `layout`, with `metadata`.
pub fn write(
    layout: &ParamLayout,
    states: &[(&str, &[f32])],
    metadata: HashMap<String, String>,
) -> Result<Vec<u8>, SafeTensorError> {
    // Little-endian bytes of every tensor, then views into them.
    let mut data: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
    for (prefix, values) in states {
        assert_eq!(values.len(), layout.len, "values must be in the layout");
        for p in &layout.params {
            let bytes = values[p.offset..p.offset + p.len()].iter().flat_map(|v| v.to_le_bytes()).collect();
            data.push((format!("{prefix}{}", p.name), p.shape.clone(), bytes));
        }
    }
    let views = data
        .iter()
        .map(|(name, shape, bytes)| TensorView::new(Dtype::F32, shape.clone(), bytes).map(|view| (name.as_str(), view)))
        .collect::<Result<Vec<_>, _>>()?;
    safetensors::serialize(views, Some(metadata))
}

/// What is wrong with the tensor of a parameter.
#[derive(Clone, Debug, PartialEq)]
pub enum Flaw {
    Missing,
    /// Its dtype, which is not F32.
    Dtype(Dtype),
    /// Its shape, which is not the parameter's.
    Shape(Vec<usize>),
    /// The index of its first NaN or infinity.
    NonFinite(usize),
}

/// The values (in `layout`) of the tensors `<prefix><parameter>`, each checked for dtype, shape
/// and finite values; or the first flawed tensor's name, its flaw and the parameter's shape.
pub fn read(tensors: &SafeTensors, layout: &ParamLayout, prefix: &str) -> Result<Vec<f32>, (String, Flaw, Vec<usize>)> {
    let mut flat = vec![0.0; layout.len];
    for p in &layout.params {
        let name = format!("{prefix}{}", p.name);
        let flawed = |flaw| (name.clone(), flaw, p.shape.clone());
        let t = tensors.tensor(&name).map_err(|_| flawed(Flaw::Missing))?;
        if t.dtype() != Dtype::F32 {
            return Err(flawed(Flaw::Dtype(t.dtype())));
        }
        if t.shape() != p.shape.as_slice() {
            return Err(flawed(Flaw::Shape(t.shape().to_vec())));
        }
        let values = &mut flat[p.offset..p.offset + p.len()];
        // The header was validated against the buffer, so the data has exactly 4 bytes per value.
        for (v, b) in values.iter_mut().zip(t.data().chunks_exact(4)) {
            *v = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        }
        if let Some(i) = values.iter().position(|v| !v.is_finite()) {
            return Err(flawed(Flaw::NonFinite(i)));
        }
    }
    Ok(flat)
}
