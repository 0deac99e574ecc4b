//! Where each named parameter lives in the flat parameter tensor, and how it starts out.

use crate::backend::RandomKey;
use crate::random;
use crate::tensor::Tensor;

/// Parameter views start on multiples of 64 floats (256 bytes), the storage-offset alignment
/// WebGPU guarantees, so each can be bound to a kernel on its own.
pub const ALIGN: usize = 64;

/// How a parameter is initialised.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Init {
    /// Uniform in `[-1/sqrt(fan_in), 1/sqrt(fan_in)]` (PyTorch's default for conv and linear
    /// weights), which keeps activations of roughly unit scale through the network.
    FanIn(usize),
    Zeros,
    Ones,
}

/// One named parameter tensor inside the flat buffer.
#[derive(Clone, Debug)]
pub struct Param {
    pub name: String,
    pub offset: usize,
    pub shape: Vec<usize>,
    pub init: Init,
}

impl Param {
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// This parameter's view of a flat tensor (parameters, gradients, Adam moments, ...).
    pub fn of<S: Clone>(&self, flat: &Tensor<S>) -> Tensor<S> {
        flat.view(self.offset, &self.shape)
    }
}

#[derive(Clone, Debug, Default)]
pub struct ParamLayout {
    pub params: Vec<Param>,
    /// Length of the flat buffer, padding included.
    pub len: usize,
}

impl ParamLayout {
    /// Reserves a parameter and returns its handle.
    pub fn add(&mut self, name: &str, shape: &[usize], init: Init) -> Param {
        let p = Param { name: name.to_string(), offset: self.len, shape: shape.to_vec(), init };
        self.len += p.len().next_multiple_of(ALIGN);
        self.params.push(p.clone());
        p
    }

    /// Number of trainable values (padding excluded).
    pub fn count(&self) -> usize {
        self.params.iter().map(Param::len).sum()
    }

    /// Copies into `values` (this layout) every parameter of `from_values` (laid out as `from`)
    /// with the same name and shape: how a run starts from another's weights (a conditional
    /// network from an unconditional one: all but the label embedding). Returns the number
    /// of parameters copied.
    pub fn copy_matching(&self, values: &mut [f32], from: &ParamLayout, from_values: &[f32]) -> usize {
        assert_eq!(values.len(), self.len, "values must be in this layout");
        assert_eq!(from_values.len(), from.len, "from_values must be in the layout `from`");
        let mut copied = 0;
        for p in &self.params {
            if let Some(q) = from.params.iter().find(|q| q.name == p.name && q.shape == p.shape) {
                values[p.offset..p.offset + p.len()].copy_from_slice(&from_values[q.offset..q.offset + q.len()]);
                copied += 1;
            }
        }
        copied
    }

    /// Initial values for the whole flat buffer (padding is zero), drawn from Philox so the
    /// same seed gives the same network on every backend.
    pub fn init(&self, seed: u64) -> Vec<f32> {
        let mut flat = vec![0.0; self.len];
        for (i, p) in self.params.iter().enumerate() {
            let key = RandomKey { seed, step: 0, stream: i as u32 };
            let values = &mut flat[p.offset..p.offset + p.len()];
            match p.init {
                Init::Zeros => {}
                Init::Ones => values.fill(1.0),
                Init::FanIn(fan_in) => {
                    let bound = 1.0 / (fan_in as f32).sqrt();
                    for (j, v) in values.iter_mut().enumerate() {
                        *v = (2.0 * random::uniform(key, j as u32) - 1.0) * bound;
                    }
                }
            }
        }
        flat
    }
}
