//! The CPU backend: a plain-Rust twin of every GPU kernel. It is the reference the kernels are
//! tested against (clear loops, f64 accumulation in reductions) and a usable fallback where
//! there is no GPU (rayon across samples and channels; register-tiled direct kernels for the 3x3
//! stride-1 convolutions in `direct`, with run-time AVX2+FMA dispatch in `simd`; matrixmultiply's
//! sgemm for the rest). `conv`, `elementwise`, `loss`, `norm`, `optim` and `random` each
//! implement the op family of the same name (`../conv.rs`: `ConvOps`, ...) and mirror the files
//! of the same name in `../gpu/`; this file holds the storage ([`Memory`]).

mod conv;
pub mod direct;
mod elementwise;
mod loss;
mod math;
mod norm;
mod optim;
mod pool;
mod random;
pub mod simd;

use std::cell::{Ref, RefMut};
use std::rc::Rc;

use super::Memory;
use crate::tensor::Tensor;
use crate::Result;

pub use pool::CpuBuffer;

pub type CpuStorage = Rc<CpuBuffer>;
pub type CpuTensor = Tensor<CpuStorage>;

#[derive(Default)]
pub struct CpuBackend;

impl CpuBackend {
    pub fn new() -> Self {
        CpuBackend
    }
}

/// The values of a view. Ops never write a tensor they also read, except where an argument is
/// documented as updated in place.
pub(crate) fn data(t: &CpuTensor) -> Ref<'_, [f32]> {
    Ref::map(t.storage.borrow(), |v| &v[t.offset..t.offset + t.len()])
}

pub(crate) fn data_mut(t: &CpuTensor) -> RefMut<'_, [f32]> {
    let (start, end) = (t.offset, t.offset + t.len());
    RefMut::map(t.storage.borrow_mut(), |v| &mut v[start..end])
}

impl Memory for CpuBackend {
    type Storage = CpuStorage;
    type Bytes = Rc<Vec<u8>>;

    fn name(&self) -> String {
        format!("cpu ({} threads)", rayon::current_num_threads())
    }

    fn empty(&self, shape: &[usize]) -> CpuTensor {
        Tensor::new(Rc::new(CpuBuffer::uninit(shape.iter().product())), shape)
    }

    fn zeros(&self, shape: &[usize]) -> CpuTensor {
        Tensor::new(Rc::new(CpuBuffer::zeros(shape.iter().product())), shape)
    }

    fn upload(&self, values: &[f32], shape: &[usize]) -> CpuTensor {
        assert_eq!(
            values.len(),
            shape.iter().product::<usize>(),
            "upload of {} values into shape {shape:?}",
            values.len()
        );
        Tensor::new(Rc::new(CpuBuffer::from_vec(values.to_vec())), shape)
    }

    fn write(&self, dst: &CpuTensor, values: &[f32]) {
        data_mut(dst).copy_from_slice(values);
    }

    fn copy(&self, src: &CpuTensor, dst: &CpuTensor) {
        let values = data(src).to_vec();
        data_mut(dst).copy_from_slice(&values);
    }

    fn upload_bytes(&self, bytes: &[u8]) -> Rc<Vec<u8>> {
        Rc::new(bytes.to_vec())
    }

    async fn read(&self, t: &CpuTensor) -> Result<Vec<f32>> {
        Ok(data(t).to_vec())
    }

    fn flush(&self) {}
}
