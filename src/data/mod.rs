//! Training data: the IDX file format and the MNIST digits stored in it.
//!
//! Files are untrusted input (they come from a package registry, a user's disk or a browser
//! upload), so parsing validates everything and reports what is wrong and where as
//! [`crate::Error::Invalid`]; it never panics. Reading from disk is native only: the browser hands
//! the bytes to [`mnist::Mnist::from_idx_bytes`].

pub mod idx;
pub mod mnist;

pub use mnist::{Mnist, Split};
