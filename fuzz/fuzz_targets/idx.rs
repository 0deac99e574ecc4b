//! Arbitrary bytes into the IDX parser and the MNIST loader: neither may panic, and whatever
//! they accept must be consistent (as many bytes as the dimensions say, labels 0-9).
//!
//! Input layout: the whole input is tried as one IDX file; then its first two bytes (big-endian)
//! say how many of the remaining bytes are the images file, and the rest is the labels file.

#![no_main]

use consistency::data::idx;
use consistency::data::mnist::{Mnist, CLASSES};
use consistency::image::PIXELS;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    if let Ok(array) = idx::parse_u8(bytes, "fuzz input") {
        assert_eq!(array.dims.iter().product::<usize>(), array.data.len());
    }

    let (images, labels) = match bytes {
        [high, low, rest @ ..] => rest.split_at((u16::from_be_bytes([*high, *low]) as usize).min(rest.len())),
        _ => return,
    };
    if let Ok(mnist) = Mnist::from_idx_bytes(images, labels) {
        assert!(mnist.count > 0);
        assert_eq!(mnist.images.len(), mnist.count * PIXELS);
        assert_eq!(mnist.labels.len(), mnist.count);
        assert!(mnist.labels.iter().all(|&label| (label as usize) < CLASSES));
    }
});
