//! The CPU backend: a plain-Rust twin of every GPU kernel. It is the reference the kernels are
//! tested against (clear loops, f64 accumulation in reductions) and a usable fallback where
//! there is no GPU (rayon across samples and channels; register-tiled direct kernels for the 3x3
//! stride-1 convolutions in `direct`, with run-time AVX2+FMA dispatch in `simd`; matrixmultiply's
//! sgemm for the rest). `conv`, `elementwise`, `loss`, `norm`, `optim` and `random` mirror the
//! files of the same name in `../gpu/`.

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

use super::{AdamStep, Backend, Conv2d, Metric, RandomKey};
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

impl Backend for CpuBackend {
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

    fn conv2d(&self, g: &Conv2d, x: &CpuTensor, w: &CpuTensor, b: &CpuTensor, y: &CpuTensor) {
        conv::conv2d(g, &data(x), &data(w), &data(b), &mut data_mut(y))
    }
    fn conv2d_backward_input(&self, g: &Conv2d, dy: &CpuTensor, w: &CpuTensor, dx: &CpuTensor) {
        conv::conv2d_backward_input(g, &data(dy), &data(w), &mut data_mut(dx))
    }
    fn conv2d_backward_weight(&self, g: &Conv2d, dy: &CpuTensor, x: &CpuTensor, dw: &CpuTensor) {
        conv::conv2d_backward_weight(g, &data(dy), &data(x), &mut data_mut(dw))
    }
    fn linear(&self, x: &CpuTensor, w: &CpuTensor, b: &CpuTensor, y: &CpuTensor) {
        conv::linear(x.dim(0), x.dim(1), w.dim(0), &data(x), &data(w), &data(b), &mut data_mut(y))
    }
    fn linear_backward_input(&self, dy: &CpuTensor, w: &CpuTensor, dx: &CpuTensor) {
        conv::linear_backward_input(dy.dim(0), w.dim(1), w.dim(0), &data(dy), &data(w), &mut data_mut(dx))
    }
    fn linear_backward_weight(&self, dy: &CpuTensor, x: &CpuTensor, dw: &CpuTensor) {
        conv::linear_backward_weight(dy.dim(0), x.dim(1), dy.dim(1), &data(dy), &data(x), &mut data_mut(dw))
    }
    fn channel_sum(&self, x: &CpuTensor, out: &CpuTensor, per_sample: bool) {
        let (n, c) = (x.dim(0), x.dim(1));
        conv::channel_sum(n, c, x.len() / (n * c), &data(x), &mut data_mut(out), per_sample)
    }

    fn group_norm(
        &self,
        groups: usize,
        silu: bool,
        x: &CpuTensor,
        gamma: &CpuTensor,
        beta: &CpuTensor,
        y: &CpuTensor,
        stats: &CpuTensor,
    ) {
        let (n, c) = (x.dim(0), x.dim(1));
        norm::group_norm(
            n,
            c,
            x.len() / (n * c),
            groups,
            silu,
            &data(x),
            &data(gamma),
            &data(beta),
            &mut data_mut(y),
            &mut data_mut(stats),
        )
    }
    fn group_norm_backward(
        &self,
        groups: usize,
        silu: bool,
        dy: &CpuTensor,
        x: &CpuTensor,
        gamma: &CpuTensor,
        beta: &CpuTensor,
        stats: &CpuTensor,
        dx: &CpuTensor,
        dgamma: &CpuTensor,
        dbeta: &CpuTensor,
    ) {
        let (n, c) = (x.dim(0), x.dim(1));
        // dgamma and dbeta are usually views of one flat gradient tensor, which cannot be
        // borrowed mutably twice: compute them into scratch first.
        let (mut dg, mut db) = (vec![0.0; c], vec![0.0; c]);
        norm::group_norm_backward(
            n,
            c,
            x.len() / (n * c),
            groups,
            silu,
            &data(dy),
            &data(x),
            &data(gamma),
            &data(beta),
            &data(stats),
            &mut data_mut(dx),
            &mut dg,
            &mut db,
        );
        data_mut(dgamma).copy_from_slice(&dg);
        data_mut(dbeta).copy_from_slice(&db);
    }
    fn channel_normalize(&self, x: &CpuTensor, y: &CpuTensor, r: &CpuTensor) {
        let (n, c) = (x.dim(0), x.dim(1));
        norm::channel_normalize(n, c, x.len() / (n * c), &data(x), &mut data_mut(y), &mut data_mut(r))
    }
    fn channel_normalize_backward(&self, x: &CpuTensor, r: &CpuTensor, dy: &CpuTensor, dx: &CpuTensor) {
        let (n, c) = (x.dim(0), x.dim(1));
        norm::channel_normalize_backward(n, c, x.len() / (n * c), &data(x), &data(r), &data(dy), &mut data_mut(dx))
    }
    fn silu(&self, x: &CpuTensor, y: &CpuTensor) {
        elementwise::silu(&data(x), &mut data_mut(y))
    }
    fn silu_backward(&self, x: &CpuTensor, dy: &CpuTensor, dx: &CpuTensor) {
        elementwise::silu_backward(&data(x), &data(dy), &mut data_mut(dx))
    }
    fn upsample2x(&self, x: &CpuTensor, y: &CpuTensor) {
        elementwise::upsample2x(x.dim(0) * x.dim(1), x.dim(2), x.dim(3), &data(x), &mut data_mut(y))
    }
    fn upsample2x_backward(&self, dy: &CpuTensor, dx: &CpuTensor) {
        elementwise::upsample2x_backward(dx.dim(0) * dx.dim(1), dx.dim(2), dx.dim(3), &data(dy), &mut data_mut(dx))
    }

    fn copy_channels(
        &self,
        src: &CpuTensor,
        src_start: usize,
        dst: &CpuTensor,
        dst_start: usize,
        count: usize,
        accumulate: bool,
    ) {
        let (n, cs, cd) = (src.dim(0), src.dim(1), dst.dim(1));
        let s = src.len() / (n * cs);
        elementwise::copy_channels(
            n,
            s,
            cs,
            src_start,
            cd,
            dst_start,
            count,
            accumulate,
            &data(src),
            &mut data_mut(dst),
        )
    }
    fn add_channel_bias(&self, x: &CpuTensor, e: &CpuTensor, y: &CpuTensor) {
        let (n, c) = (x.dim(0), x.dim(1));
        elementwise::add_channel_bias(n * c, x.len() / (n * c), &data(x), &data(e), &mut data_mut(y))
    }
    fn add(&self, a: &CpuTensor, b: &CpuTensor, out: &CpuTensor) {
        elementwise::add(&data(a), &data(b), &mut data_mut(out))
    }
    fn scale_add(&self, alpha: &CpuTensor, x: &CpuTensor, beta: &CpuTensor, y: &CpuTensor, out: &CpuTensor) {
        elementwise::scale_add(x.dim(0), &data(alpha), &data(x), &data(beta), &data(y), &mut data_mut(out))
    }
    fn sinusoidal_embedding(&self, c: &CpuTensor, out: &CpuTensor) {
        elementwise::sinusoidal_embedding(&data(c), out.dim(1) / 2, &mut data_mut(out))
    }
    fn keep_known(&self, patch: usize, x: &CpuTensor, y: &CpuTensor, keep: &CpuTensor, out: &CpuTensor) {
        let (h, w) = super::keep_known_geometry(patch, &x.shape, &y.shape, &keep.shape, &out.shape);
        elementwise::keep_known(h, w, patch, &data(x), &data(y), &data(keep), &mut data_mut(out))
    }

    fn loss(
        &self,
        metric: Metric,
        pred: &CpuTensor,
        target: &CpuTensor,
        weight: &CpuTensor,
        loss: &CpuTensor,
        stats: &CpuTensor,
    ) {
        loss::loss(
            metric,
            pred.dim(0),
            &data(pred),
            &data(target),
            &data(weight),
            &mut data_mut(loss),
            &mut data_mut(stats),
        )
    }
    fn loss_backward(
        &self,
        metric: Metric,
        pred: &CpuTensor,
        target: &CpuTensor,
        weight: &CpuTensor,
        stats: &CpuTensor,
        dpred: &CpuTensor,
    ) {
        loss::loss_backward(
            metric,
            pred.dim(0),
            &data(pred),
            &data(target),
            &data(weight),
            &data(stats),
            &mut data_mut(dpred),
        )
    }
    fn softmax_cross_entropy(&self, logits: &CpuTensor, labels: &CpuTensor, loss: &CpuTensor) {
        let n = logits.dim(0);
        assert!(labels.len() == n && loss.len() == n, "softmax_cross_entropy: labels and loss must be [{n}]");
        loss::softmax_cross_entropy(n, &data(logits), &data(labels), &mut data_mut(loss))
    }
    fn softmax_cross_entropy_backward(&self, logits: &CpuTensor, labels: &CpuTensor, dlogits: &CpuTensor) {
        let n = logits.dim(0);
        assert!(labels.len() == n && dlogits.len() == logits.len(), "softmax_cross_entropy_backward: shapes");
        loss::softmax_cross_entropy_backward(n, &data(logits), &data(labels), &mut data_mut(dlogits))
    }
    fn sum(&self, x: &CpuTensor, out: &CpuTensor, square: bool, scale: f32) {
        let total = loss::sum(&data(x), square, scale);
        data_mut(out)[0] = total;
    }

    fn adam(
        &self,
        step: &AdamStep,
        params: &CpuTensor,
        grad: &CpuTensor,
        m: &CpuTensor,
        v: &CpuTensor,
        grad_sumsq: &CpuTensor,
    ) {
        let sumsq = data(grad_sumsq)[0];
        optim::adam(step, &mut data_mut(params), &data(grad), &mut data_mut(m), &mut data_mut(v), sumsq)
    }
    fn ema(&self, mu: f32, avg: &CpuTensor, x: &CpuTensor) {
        optim::ema(mu, &mut data_mut(avg), &data(x))
    }

    fn random_uniform(&self, key: RandomKey, out: &CpuTensor) {
        random::random_uniform(key, &mut data_mut(out))
    }
    fn random_normal(&self, key: RandomKey, out: &CpuTensor) {
        random::random_normal(key, &mut data_mut(out))
    }
    fn random_index(&self, key: RandomKey, bound: u32, out: &CpuTensor) {
        random::random_index(key, bound, &mut data_mut(out))
    }
    fn gather_rows(&self, bytes: &Rc<Vec<u8>>, row_len: usize, index: &CpuTensor, out: &CpuTensor) {
        random::gather_rows(bytes, row_len, &data(index), &mut data_mut(out))
    }
}
