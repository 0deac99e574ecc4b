//! Counter-based random numbers (`shaders/random.wgsl`, twin of `src/random.rs`) and the
//! minibatch gather from a u8 dataset.

use super::{bind, grid, kernel, params, GpuBackend, GpuBytes, GpuTensor, UniformLayout, WORKGROUP};
use crate::backend::{RandomKey, RandomOps};
use crate::gpu::Kernel;

params! {
    /// Mirrors `Params` of `random.wgsl`.
    struct RandomParams {
        len: u32,
        step: u32,
        stream: u32,
        seed_lo: u32,
        seed_hi: u32,
        bound: u32,
    }
}

fn draw(be: &GpuBackend, kernel: &Kernel, key: RandomKey, bound: u32, out: &GpuTensor) {
    // The element index is the Philox counter, a u32.
    assert!(out.len() <= u32::MAX as usize, "random: at most 2^32 values per draw");
    let p = RandomParams {
        len: out.len() as u32,
        step: key.step,
        stream: key.stream,
        seed_lo: key.seed as u32,
        seed_hi: (key.seed >> 32) as u32,
        bound,
    };
    be.dispatch(kernel, &p, &[out], grid(out.len(), WORKGROUP));
}

params! {
    /// Mirrors `Params` of `gather_rows.wgsl`.
    struct GatherParams {
        len: u32,
        row_len: u32,
        rows: u32,
    }
}

impl RandomOps for GpuBackend {
    fn random_uniform(&self, key: RandomKey, out: &GpuTensor) {
        draw(self, &kernel!("random", entry = "uniform01"), key, 0, out)
    }

    fn random_normal(&self, key: RandomKey, out: &GpuTensor) {
        draw(self, &kernel!("random", entry = "normal"), key, 0, out)
    }

    fn random_index(&self, key: RandomKey, bound: u32, out: &GpuTensor) {
        assert!(bound > 0, "random_index: bound must be positive");
        draw(self, &kernel!("random", entry = "index"), key, bound, out)
    }

    fn gather_rows(&self, data: &GpuBytes, row_len: usize, index: &GpuTensor, out: &GpuTensor) {
        assert!(
            row_len > 0 && data.len() >= row_len,
            "gather_rows: dataset of {} bytes has no {row_len}-byte row",
            data.len()
        );
        assert_eq!(out.len(), index.len() * row_len, "gather_rows: out must be [{}, {row_len}]", index.len());
        let p = GatherParams { len: out.len() as u32, row_len: row_len as u32, rows: (data.len() / row_len) as u32 };
        // The dataset is not a tensor, so its binding goes to the launcher directly.
        self.launcher.dispatch(
            &kernel!("gather_rows"),
            bytemuck::bytes_of(&p),
            &[data.binding(), bind(index), bind(out)],
            grid(out.len(), WORKGROUP),
        );
    }
}

/// The parameters of each kernel here (tests/shader_layout.rs).
pub(super) const UNIFORMS: &[UniformLayout] =
    &[RandomParams::uniform(kernel!("random", entry = "uniform01")), GatherParams::uniform(kernel!("gather_rows"))];
