//! Tensor storage reused across steps.
//!
//! A training step allocates the same few dozen shapes every time, several MB each at batch 64.
//! Freshly allocated, every one of them was a round trip through the kernel (pages mapped,
//! zeroed on first touch, unmapped when the heap shrank): about a tenth of a CPU step in page
//! faults and page clearing. Dropped storage now goes to a per-thread free list keyed by length,
//! and `empty` takes from it without clearing (its contents are undefined by contract).

use std::cell::RefCell;
use std::collections::HashMap;

/// At most this many f32 values wait in the free list (256 MB); storage dropped beyond that
/// is freed, so a run that changes shapes does not hoard memory.
const MAX_POOLED: usize = 64 << 20;

#[derive(Default)]
struct FreeList {
    by_len: HashMap<usize, Vec<Vec<f32>>>,
    pooled: usize,
}

thread_local! {
    static FREE: RefCell<FreeList> = RefCell::new(FreeList::default());
}

/// The values of one CPU tensor's storage; given back to the free list when dropped.
#[derive(Debug, Default)]
pub struct CpuBuffer(RefCell<Vec<f32>>);

impl CpuBuffer {
    /// Storage of `len` values, contents undefined (reused) or zero (new).
    pub fn uninit(len: usize) -> CpuBuffer {
        let reused = FREE.with(|f| {
            let mut f = f.borrow_mut();
            let v = f.by_len.get_mut(&len).and_then(Vec::pop);
            if v.is_some() {
                f.pooled -= len;
            }
            v
        });
        CpuBuffer(RefCell::new(reused.unwrap_or_else(|| vec![0.0; len])))
    }

    pub fn zeros(len: usize) -> CpuBuffer {
        let b = CpuBuffer::uninit(len);
        b.0.borrow_mut().fill(0.0);
        b
    }

    pub fn from_vec(values: Vec<f32>) -> CpuBuffer {
        CpuBuffer(RefCell::new(values))
    }

    pub fn borrow(&self) -> std::cell::Ref<'_, Vec<f32>> {
        self.0.borrow()
    }

    pub fn borrow_mut(&self) -> std::cell::RefMut<'_, Vec<f32>> {
        self.0.borrow_mut()
    }
}

impl Drop for CpuBuffer {
    fn drop(&mut self) {
        let v = std::mem::take(self.0.get_mut());
        let len = v.len();
        if len == 0 {
            return;
        }
        // try_with: a buffer dropped while the thread's locals are torn down is simply freed.
        let _ = FREE.try_with(|f| {
            let mut f = f.borrow_mut();
            if f.pooled + len <= MAX_POOLED {
                f.pooled += len;
                f.by_len.entry(len).or_default().push(v);
            }
        });
    }
}
