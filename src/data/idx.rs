//! IDX, the array format of the MNIST files, as plain or gzipped bytes.
//!
//! Layout (big-endian): two zero bytes, an element-type byte, a dimension count `n`, then `n`
//! u32 dimension sizes, then the elements in row-major order and nothing else. Only unsigned
//! bytes (type 0x08) are accepted, which is all MNIST uses.
//!
//! Every check names the source and the byte offset it concerns. Sizes are computed with checked
//! u64 arithmetic, so hostile dimensions (products past 2^64, or past usize on wasm32) give an
//! error instead of an overflow, and nothing is allocated before the header has been checked
//! against the input's real length. Gzip is recognised by its magic bytes, not by a file name,
//! and decompression stops at [`MAX_IDX_BYTES`], so a gzip bomb costs at most that much memory.

use std::fmt::Display;
use std::io::Read;

use crate::{Error, Result};

/// The most bytes an IDX file may have after decompression (or on disk): 64 MiB. MNIST's largest
/// file, the training images, has 47,040,016 bytes.
pub const MAX_IDX_BYTES: usize = 64 << 20;

/// The first two bytes of every gzip stream (RFC 1952).
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// IDX's element-type code for unsigned bytes.
const TYPE_U8: u8 = 0x08;

/// Bytes before the dimension sizes: two zero bytes, the element type, the dimension count.
const MAGIC_LEN: usize = 4;

/// An IDX array of unsigned bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdxU8 {
    /// Dimension sizes, outermost first (MNIST images: count, rows, columns).
    pub dims: Vec<usize>,
    /// The elements in row-major order; exactly the product of `dims` of them.
    pub data: Vec<u8>,
}

/// `Error::Invalid` with the source named first, so every message says where the problem is.
fn invalid(source: &str, what: impl Display) -> Error {
    Error::Invalid(format!("{source}: {what}"))
}

/// Whether `bytes` starts like a gzip stream.
pub fn is_gzip(bytes: &[u8]) -> bool {
    bytes.starts_with(&GZIP_MAGIC)
}

/// Parses an IDX array of unsigned bytes from `bytes`, gunzipping them first if they are gzip.
/// `source` names the input in error messages (a file path, or "images" for browser uploads).
pub fn parse_u8(bytes: &[u8], source: &str) -> Result<IdxU8> {
    if is_gzip(bytes) {
        let raw = gunzip(bytes, source, MAX_IDX_BYTES)?;
        parse_u8_raw(&raw, &format!("{source} (gunzipped)"))
    } else {
        parse_u8_raw(bytes, source)
    }
}

/// Decompresses a gzip stream (several concatenated members are one stream, as for `gunzip`),
/// refusing to produce more than `limit` bytes.
pub fn gunzip(bytes: &[u8], source: &str, limit: usize) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    // One byte past the limit tells "exactly at the limit" from "over it" without inflating more.
    let mut decoder = flate2::read::MultiGzDecoder::new(bytes).take(limit as u64 + 1);
    decoder.read_to_end(&mut out).map_err(|e| invalid(source, format_args!("not a valid gzip stream: {e}")))?;
    if out.len() > limit {
        return Err(invalid(
            source,
            format_args!("decompresses to more than {limit} bytes (the limit for an IDX file); refusing to go on"),
        ));
    }
    Ok(out)
}

/// The name of an IDX element type, for messages.
fn type_name(code: u8) -> Option<&'static str> {
    Some(match code {
        0x08 => "unsigned byte",
        0x09 => "signed byte",
        0x0B => "i16",
        0x0C => "i32",
        0x0D => "f32",
        0x0E => "f64",
        _ => return None,
    })
}

/// "60000 x 28 x 28".
fn format_dims(dims: &[u32]) -> String {
    dims.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(" x ")
}

/// Parses uncompressed IDX bytes holding unsigned bytes.
pub fn parse_u8_raw(bytes: &[u8], source: &str) -> Result<IdxU8> {
    if bytes.len() < MAGIC_LEN {
        return Err(invalid(
            source,
            format_args!("{} bytes long, too short for the 4-byte IDX magic number", bytes.len()),
        ));
    }
    if bytes[0] != 0 || bytes[1] != 0 {
        let hint = if bytes.starts_with(&GZIP_MAGIC) { " (it is gzip inside gzip)" } else { "" };
        return Err(invalid(
            source,
            format_args!(
                "not an IDX file: bytes 0-1 are {:02x} {:02x}, the IDX magic number starts with 00 00{hint}",
                bytes[0], bytes[1]
            ),
        ));
    }
    let element_type = bytes[2];
    if element_type != TYPE_U8 {
        let what = match type_name(element_type) {
            Some(name) => format!("element type 0x{element_type:02x} ({name}) is not supported"),
            None => format!("unknown IDX element type 0x{element_type:02x}"),
        };
        return Err(invalid(source, format_args!("byte 2: {what}; only 0x08 (unsigned byte) is")));
    }
    let rank = bytes[3] as usize;
    if rank == 0 {
        return Err(invalid(source, "byte 3: the dimension count is 0; an IDX array needs at least one dimension"));
    }
    // At most 4 + 4 * 255 bytes, so this cannot overflow.
    let header_len = MAGIC_LEN + 4 * rank;
    if bytes.len() < header_len {
        return Err(invalid(
            source,
            format_args!(
                "truncated header: {rank} dimensions need a {header_len}-byte header, the input has {} bytes",
                bytes.len()
            ),
        ));
    }
    let dims: Vec<u32> =
        bytes[MAGIC_LEN..header_len].chunks_exact(4).map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]])).collect();

    // The element count in u64 (each dimension is below 2^32, the product may not be), then in
    // usize, which on wasm32 has only 32 bits.
    let element_count = dims.iter().try_fold(1u64, |product, &d| product.checked_mul(d as u64)).ok_or_else(|| {
        invalid(
            source,
            format_args!("bytes 4-{}: dimensions {} overflow a 64-bit size", header_len - 1, format_dims(&dims)),
        )
    })?;
    let data_len =
        usize::try_from(element_count).ok().filter(|n| n.checked_add(header_len).is_some()).ok_or_else(|| {
            invalid(
                source,
                format_args!(
                    "bytes 4-{}: dimensions {} describe {element_count} bytes, more than this machine can address",
                    header_len - 1,
                    format_dims(&dims)
                ),
            )
        })?;

    let found = bytes.len() - header_len;
    if found < data_len {
        return Err(invalid(
            source,
            format_args!(
                "truncated: dimensions {} need {data_len} data bytes after the {header_len}-byte header, found {found} \
                 (the input should be {} bytes, it is {})",
                format_dims(&dims),
                header_len + data_len,
                bytes.len()
            ),
        ));
    }
    if found > data_len {
        return Err(invalid(
            source,
            format_args!(
                "{} extra bytes after the data, from byte {}: dimensions {} need {data_len} data bytes after the \
                 {header_len}-byte header (the input should be {} bytes, it is {})",
                found - data_len,
                header_len + data_len,
                format_dims(&dims),
                header_len + data_len,
                bytes.len()
            ),
        ));
    }
    Ok(IdxU8 { dims: dims.iter().map(|&d| d as usize).collect(), data: bytes[header_len..].to_vec() })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An IDX header of unsigned bytes with these dimensions, followed by `data`.
    fn idx(dims: &[u32], data: &[u8]) -> Vec<u8> {
        let mut bytes = vec![0, 0, TYPE_U8, dims.len() as u8];
        for d in dims {
            bytes.extend_from_slice(&d.to_be_bytes());
        }
        bytes.extend_from_slice(data);
        bytes
    }

    fn message(result: Result<IdxU8>) -> String {
        match result {
            Ok(array) => panic!("expected an error, parsed dims {:?}", array.dims),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn parses_a_small_array() {
        let data: Vec<u8> = (0..24).collect();
        let array = parse_u8(&idx(&[2, 3, 4], &data), "t").unwrap();
        assert_eq!(array.dims, vec![2, 3, 4]);
        assert_eq!(array.data, data);
    }

    #[test]
    fn a_zero_dimension_is_an_empty_array() {
        let array = parse_u8(&idx(&[0, 28, 28], &[]), "t").unwrap();
        assert_eq!(array.dims, vec![0, 28, 28]);
        assert!(array.data.is_empty());
    }

    #[test]
    fn rejects_bad_headers_with_the_place() {
        assert!(message(parse_u8(&[0, 0, 8], "f")).starts_with("f: 3 bytes long"));
        assert!(message(parse_u8(&[1, 0, 8, 1, 0, 0, 0, 0], "f")).contains("bytes 0-1 are 01 00"));
        assert!(message(parse_u8(&[0, 0, 0x0D, 1, 0, 0, 0, 0], "f")).contains("byte 2: element type 0x0d (f32)"));
        assert!(message(parse_u8(&[0, 0, 0x42, 1, 0, 0, 0, 0], "f")).contains("unknown IDX element type 0x42"));
        assert!(message(parse_u8(&[0, 0, 8, 0], "f")).contains("byte 3: the dimension count is 0"));
        assert!(message(parse_u8(&[0, 0, 8, 3, 0, 0, 0, 1], "f")).contains("3 dimensions need a 16-byte header"));
    }

    #[test]
    fn rejects_sizes_that_do_not_match() {
        let short = message(parse_u8(&idx(&[2, 3], &[0; 5]), "f"));
        assert!(short.contains("truncated: dimensions 2 x 3 need 6 data bytes"), "{short}");
        let long = message(parse_u8(&idx(&[2, 3], &[0; 8]), "f"));
        assert!(long.contains("2 extra bytes after the data, from byte 18"), "{long}");
        let huge = message(parse_u8(&idx(&[u32::MAX, u32::MAX, u32::MAX], &[]), "f"));
        assert!(huge.contains("overflow a 64-bit size"), "{huge}");
    }

    #[test]
    fn gzip_is_detected_by_content_and_bounded() {
        use std::io::Write;
        let gz = |raw: &[u8]| {
            let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            encoder.write_all(raw).unwrap();
            encoder.finish().unwrap()
        };
        let data = [7u8; 12];
        assert_eq!(parse_u8(&gz(&idx(&[3, 4], &data)), "f").unwrap().data, data);
        // A limit exactly at the size passes; one below fails with a message.
        let compressed = gz(&[0; 1000]);
        assert_eq!(gunzip(&compressed, "f", 1000).unwrap().len(), 1000);
        assert!(gunzip(&compressed, "f", 999).unwrap_err().to_string().contains("more than 999 bytes"));
        let mut corrupt = compressed.clone();
        corrupt.truncate(compressed.len() / 2);
        assert!(message(parse_u8(&corrupt, "f")).contains("not a valid gzip stream"));
    }
}
