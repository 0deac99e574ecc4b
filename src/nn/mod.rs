//! Layers with hand-written backward passes, and the reference U-Net built from them.
//!
//! All parameters of a network live in one flat tensor ([`params::ParamLayout`]); gradients in
//! another of the same layout. A layer holds only the offsets of its parameters, so the same
//! network runs with the online, target or EMA weights by passing a different flat tensor, and
//! the optimizer touches every parameter in one dispatch.

pub mod classifier;
pub mod layers;
pub mod params;
pub mod unet;

pub use params::{Param, ParamLayout};
pub use unet::{UNet, Widths};
