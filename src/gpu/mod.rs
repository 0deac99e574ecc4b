//! GPU plumbing, independent of what the kernels compute: opening a device ([`context`]) and
//! launching compute shaders efficiently ([`launcher`]).

pub mod context;
pub mod launcher;

pub use context::GpuContext;
pub use launcher::{Binding, GpuBuffer, Kernel, Launcher};
