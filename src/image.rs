//! Digits as pictures: model values in [-1, 1] to 8-bit gray, and a grid of digits as a PNG.

/// Side of an MNIST digit in pixels: the one place the digit geometry is written.
pub const SIDE: usize = 28;
/// Pixels of a digit.
pub const PIXELS: usize = SIDE * SIDE;

/// The shape of `count` digits as every network takes them: `[count, 1, SIDE, SIDE]` (NCHW,
/// one gray channel).
pub fn digit_shape(count: usize) -> [usize; 4] {
    [count, 1, SIDE, SIDE]
}

/// Model values (MNIST scaled to [-1, 1]; samples may overshoot) to gray levels 0-255.
pub fn to_gray(values: &[f32]) -> Vec<u8> {
    values.iter().map(|&v| ((v.clamp(-1.0, 1.0) + 1.0) * 127.5).round() as u8).collect()
}

/// `count` digits of 28x28 gray levels laid out `columns` to a row with a 2-pixel gap, each pixel
/// drawn as a `zoom` x `zoom` square: the gray levels of the whole picture, and its size.
pub fn grid(gray: &[u8], columns: usize, zoom: usize) -> (Vec<u8>, usize, usize) {
    const GAP: usize = 2;
    let count = gray.len() / PIXELS;
    let columns = columns.clamp(1, count.max(1));
    let rows = count.div_ceil(columns);
    let cell = SIDE * zoom + GAP;
    let (width, height) = (columns * cell + GAP, rows * cell + GAP);
    let mut picture = vec![0u8; width * height];
    for (i, digit) in gray.chunks_exact(PIXELS).enumerate() {
        let (left, top) = ((i % columns) * cell + GAP, (i / columns) * cell + GAP);
        for y in 0..SIDE * zoom {
            let row = &mut picture[(top + y) * width + left..][..SIDE * zoom];
            for (x, p) in row.iter_mut().enumerate() {
                *p = digit[(y / zoom) * SIDE + x / zoom];
            }
        }
    }
    (picture, width, height)
}

/// PNG file bytes of [`grid`].
pub fn grid_png(gray: &[u8], columns: usize, zoom: usize) -> crate::Result<Vec<u8>> {
    let (picture, width, height) = grid(gray, columns, zoom);
    let mut bytes = Vec::new();
    let mut encoder = png::Encoder::new(&mut bytes, width as u32, height as u32);
    encoder.set_color(png::ColorType::Grayscale);
    encoder.set_depth(png::BitDepth::Eight);
    let fail = |e: png::EncodingError| crate::Error::Invalid(format!("PNG encoding: {e}"));
    let mut writer = encoder.write_header().map_err(fail)?;
    writer.write_image_data(&picture).map_err(fail)?;
    writer.finish().map_err(fail)?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_map_to_gray_levels_and_clamp() {
        assert_eq!(to_gray(&[-1.0, 0.0, 1.0, -3.0, 2.0]), [0, 128, 255, 0, 255]);
    }

    #[test]
    fn a_grid_places_each_digit_in_its_cell() {
        let mut gray = vec![0u8; 3 * SIDE * SIDE];
        gray[SIDE * SIDE] = 200; // digit 1, pixel (0, 0)
        gray[3 * SIDE * SIDE - 1] = 100; // digit 2, pixel (27, 27)
        let (picture, width, height) = grid(&gray, 2, 2);
        let cell = 2 * SIDE + 2;
        assert_eq!((width, height), (2 * cell + 2, 2 * cell + 2));
        let at = |x: usize, y: usize| picture[y * width + x];
        assert_eq!(at(cell + 2, 2), 200);
        assert_eq!(at(cell + 3, 3), 200);
        assert_eq!(at(cell + 4, 2), 0);
        assert_eq!(at(2 + 2 * SIDE - 1, cell + 2 + 2 * SIDE - 1), 100);
        let png = grid_png(&gray, 2, 2).unwrap();
        assert_eq!(&png[1..4], b"PNG");
    }
}
