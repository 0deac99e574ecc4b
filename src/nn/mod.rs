//! Layers with hand-written backward passes and the networks built from them: the reference
//! U-Net ([`unet`]) and the small MNIST classifier ([`classifier`], the MNIST-FID's and the
//! perceptual distance's), with the one optimizer step ([`adam`]) and the one safetensors
//! format of flat weights ([`weights_file`]) that every network here uses.
//!
//! All parameters of a network live in one flat tensor ([`params::ParamLayout`]); gradients in
//! another of the same layout. A layer holds only the offsets of its parameters, so the same
//! network runs with the online, target or EMA weights by passing a different flat tensor, and
//! the optimizer touches every parameter in one dispatch.

pub mod adam;
pub mod classifier;
pub mod layers;
pub mod params;
pub mod unet;
pub mod weights_file;

pub use adam::Adam;
pub use params::{Param, ParamLayout};
pub use unet::{UNet, Widths};
