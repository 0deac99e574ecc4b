//! A tensor is a view into a backend's storage: which storage, where it starts, and its shape.
//!
//! Views let the whole parameter set live in one flat buffer (so Adam, EMA and the gradient
//! norm are one dispatch each) while layers still see per-layer weight tensors.

/// A view of `shape.iter().product()` f32 values starting at element `offset` of `storage`.
#[derive(Clone, Debug)]
pub struct Tensor<S> {
    pub storage: S,
    pub offset: usize,
    pub shape: Vec<usize>,
}

impl<S: Clone> Tensor<S> {
    pub fn new(storage: S, shape: &[usize]) -> Self {
        Tensor { storage, offset: 0, shape: shape.to_vec() }
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Size of dimension `i`.
    pub fn dim(&self, i: usize) -> usize {
        self.shape[i]
    }

    /// A view of `shape` starting `offset` elements into this view.
    pub fn view(&self, offset: usize, shape: &[usize]) -> Self {
        let len: usize = shape.iter().product();
        assert!(offset + len <= self.len(), "view {offset}+{len} exceeds tensor of {}", self.len());
        Tensor { storage: self.storage.clone(), offset: self.offset + offset, shape: shape.to_vec() }
    }

    /// The same elements under another shape.
    pub fn reshape(&self, shape: &[usize]) -> Self {
        assert_eq!(shape.iter().product::<usize>(), self.len(), "reshape {:?} -> {shape:?}", self.shape);
        Tensor { storage: self.storage.clone(), offset: self.offset, shape: shape.to_vec() }
    }
}
