//! The MNIST digits (LeCun, Cortes, Burges): 28x28 grey images, 0 = background, 255 = ink, with
//! labels 0-9. `scripts/fetch-mnist` puts the four original IDX files in `data/mnist/`.
//!
//! Images stay u8 here, as they will on the GPU (the `gather_rows` kernel turns a minibatch of
//! them into [-1, 1] floats), so the 60,000 training images take 47 MB rather than 188.

use super::idx::{self, IdxU8};
use crate::image::{PIXELS, SIDE};
use crate::{Error, Result};

/// Digits 0-9.
pub const CLASSES: usize = 10;

/// Which of MNIST's two sets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Split {
    /// The 60,000 training images.
    Train,
    /// The 10,000 test images.
    Test,
}

impl Split {
    /// File name of the images, as distributed (a `.gz` sibling is accepted too).
    pub fn images_file(self) -> &'static str {
        match self {
            Split::Train => "train-images-idx3-ubyte",
            Split::Test => "t10k-images-idx3-ubyte",
        }
    }

    /// File name of the labels, as distributed (a `.gz` sibling is accepted too).
    pub fn labels_file(self) -> &'static str {
        match self {
            Split::Train => "train-labels-idx1-ubyte",
            Split::Test => "t10k-labels-idx1-ubyte",
        }
    }

    /// Images in the original files. Loading does not insist on it, so subsets work; callers
    /// that need the whole set compare against this.
    pub fn official_count(self) -> usize {
        match self {
            Split::Train => 60_000,
            Split::Test => 10_000,
        }
    }
}

/// MNIST images and their labels.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mnist {
    /// `count` images of [`PIXELS`] bytes each, row-major, one after another.
    pub images: Vec<u8>,
    /// `count` labels, each in 0..=9.
    pub labels: Vec<u8>,
    /// Number of images (and labels).
    pub count: usize,
}

impl Mnist {
    /// Parses the contents of an images file and a labels file (plain or gzipped IDX). For the
    /// browser, which has the bytes of an upload or a fetch but no file system.
    pub fn from_idx_bytes(images: &[u8], labels: &[u8]) -> Result<Mnist> {
        Self::from_named_bytes(images, "MNIST images", labels, "MNIST labels")
    }

    /// [`Mnist::from_idx_bytes`] with the names that error messages give the two inputs.
    fn from_named_bytes(images: &[u8], images_source: &str, labels: &[u8], labels_source: &str) -> Result<Mnist> {
        let images = idx::parse_u8(images, images_source)?;
        let labels = idx::parse_u8(labels, labels_source)?;
        Self::from_arrays(images, images_source, labels, labels_source)
    }

    /// Checks parsed arrays for MNIST's shapes and label range.
    fn from_arrays(images: IdxU8, images_source: &str, labels: IdxU8, labels_source: &str) -> Result<Mnist> {
        let [count, rows, columns] = images.dims[..] else {
            return Err(Error::Invalid(format!(
                "{images_source}: MNIST images have 3 dimensions (count x {SIDE} x {SIDE}), this file has {}: {:?}",
                images.dims.len(),
                images.dims
            )));
        };
        if (rows, columns) != (SIDE, SIDE) {
            return Err(Error::Invalid(format!(
                "{images_source}: MNIST images are {SIDE} x {SIDE} pixels, these are {rows} x {columns}"
            )));
        }
        let [label_count] = labels.dims[..] else {
            return Err(Error::Invalid(format!(
                "{labels_source}: MNIST labels have 1 dimension (count), this file has {}: {:?}",
                labels.dims.len(),
                labels.dims
            )));
        };
        if count != label_count {
            return Err(Error::Invalid(format!(
                "{images_source} holds {count} images but {labels_source} holds {label_count} labels"
            )));
        }
        if count == 0 {
            return Err(Error::Invalid(format!("{images_source}: no images (the count is 0)")));
        }
        if let Some((index, &label)) = labels.data.iter().enumerate().find(|(_, &label)| label as usize >= CLASSES) {
            return Err(Error::Invalid(format!("{labels_source}: label {index} is {label}, not a digit 0-9")));
        }
        Ok(Mnist { images: images.data, labels: labels.data, count })
    }

    /// Loads one split from `dir`, which holds the original file names, each either plain or
    /// gzipped with `.gz` appended (the plain one wins when both exist).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn load_split(dir: impl AsRef<std::path::Path>, split: Split) -> Result<Mnist> {
        let dir = dir.as_ref();
        let images_path = find_file(dir, split.images_file())?;
        let labels_path = find_file(dir, split.labels_file())?;
        let images_source = images_path.display().to_string();
        let labels_source = labels_path.display().to_string();
        Self::from_named_bytes(&read_file(&images_path)?, &images_source, &read_file(&labels_path)?, &labels_source)
    }

    /// The pixels of image `index` (panics past `count`, like slice indexing).
    pub fn image(&self, index: usize) -> &[u8] {
        &self.images[index * PIXELS..(index + 1) * PIXELS]
    }

    /// How many images of each digit.
    pub fn label_histogram(&self) -> [usize; CLASSES] {
        let mut histogram = [0; CLASSES];
        for &label in &self.labels {
            histogram[label as usize] += 1;
        }
        histogram
    }
}

/// `dir/name`, or else `dir/name.gz`, or an error saying how to get the files.
#[cfg(not(target_arch = "wasm32"))]
fn find_file(dir: &std::path::Path, name: &str) -> Result<std::path::PathBuf> {
    let plain = dir.join(name);
    if plain.is_file() {
        return Ok(plain);
    }
    let gzipped = dir.join(format!("{name}.gz"));
    if gzipped.is_file() {
        return Ok(gzipped);
    }
    Err(Error::Invalid(format!(
        "MNIST file not found: neither {} nor {}.gz exists (scripts/fetch-mnist puts the files in data/mnist/)",
        plain.display(),
        plain.display()
    )))
}

/// The whole file, refusing files larger than any IDX file we accept (a wrong path to a huge
/// file, or a device that never ends, should not exhaust memory).
#[cfg(not(target_arch = "wasm32"))]
fn read_file(path: &std::path::Path) -> Result<Vec<u8>> {
    use std::io::Read;
    let file =
        std::fs::File::open(path).map_err(|e| Error::Invalid(format!("{}: cannot open: {e}", path.display())))?;
    let mut bytes = Vec::new();
    file.take(idx::MAX_IDX_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| Error::Invalid(format!("{}: cannot read: {e}", path.display())))?;
    if bytes.len() > idx::MAX_IDX_BYTES {
        return Err(Error::Invalid(format!(
            "{}: larger than {} bytes, the limit for an IDX file",
            path.display(),
            idx::MAX_IDX_BYTES
        )));
    }
    Ok(bytes)
}
