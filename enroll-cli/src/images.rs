//! QR code images from the core's module matrix (`pam_totp::qr::matrix`, quiet zone included):
//! a 1-bit greyscale PNG (the `png` crate) and an SVG (qrcode's own SVG renderer). Both hold the
//! key, so the bytes handed back are wiped on drop; the encoders' internal buffers are not
//! ours to wipe (the CLI process is short-lived and its memory is not dumped: see main.rs).

use pam_totp::qr::Matrix;
use qrcode::render::{svg, Renderer};
use qrcode::Color;
use zeroize::Zeroizing;

/// Pixels per module in the images (scanners want several; print stays sharp).
pub const SCALE: usize = 10;

/// The PNG bytes of `m`, `scale` pixels per module, dark modules black on white.
pub fn png(m: &Matrix, scale: usize) -> Result<Zeroizing<Vec<u8>>, String> {
    let side = m.width * scale;
    let row_bytes = side.div_ceil(8);
    // Packed rows, 1 bit per pixel, 1 = white.
    let mut pixels = Zeroizing::new(Vec::with_capacity(row_bytes * side));
    for y in 0..side {
        let mut byte = 0u8;
        for x in 0..row_bytes * 8 {
            let white = x >= side || !m.is_dark(x / scale, y / scale);
            byte = (byte << 1) | u8::from(white);
            if x % 8 == 7 {
                pixels.push(byte);
                byte = 0;
            }
        }
    }
    let side = u32::try_from(side).map_err(|_| "QR code too large for a PNG".to_string())?;
    let mut out = Zeroizing::new(Vec::new());
    let mut encoder = png::Encoder::new(&mut *out, side, side);
    encoder.set_color(png::ColorType::Grayscale);
    encoder.set_depth(png::BitDepth::One);
    let fail = |e: png::EncodingError| format!("cannot encode the PNG: {e}");
    let mut writer = encoder.write_header().map_err(fail)?;
    writer.write_image_data(&pixels).map_err(fail)?;
    writer.finish().map_err(fail)?;
    Ok(out)
}

/// The SVG text of `m`: black modules on a white square, `scale` pixels per module.
pub fn svg(m: &Matrix, scale: usize) -> Zeroizing<String> {
    let colors: Zeroizing<Vec<bool>> = m.dark.clone();
    let modules: Vec<Color> = colors
        .iter()
        .map(|d| if *d { Color::Dark } else { Color::Light })
        .collect();
    let scale = u32::try_from(scale).unwrap_or(1);
    // The matrix carries its quiet zone already.
    let image = Renderer::<svg::Color>::new(&modules, m.width, 0)
        .quiet_zone(false)
        .module_dimensions(scale, scale)
        .dark_color(svg::Color("#000000"))
        .light_color(svg::Color("#ffffff"))
        .build();
    Zeroizing::new(image)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Matrix {
        pam_totp::qr::matrix("otpauth://totp/x:y?secret=JBSWY3DPEHPK3PXP").unwrap()
    }

    #[test]
    fn given_a_matrix_then_the_png_decodes_to_its_modules() {
        let m = sample();
        let bytes = png(&m, 3).unwrap();
        let decoder = png::Decoder::new(std::io::Cursor::new(bytes.to_vec()));
        let mut reader = decoder.read_info().unwrap();
        let info = reader.info();
        assert_eq!(
            (info.width as usize, info.height as usize),
            (m.width * 3, m.width * 3)
        );
        assert_eq!(
            (info.color_type, info.bit_depth),
            (png::ColorType::Grayscale, png::BitDepth::One)
        );
        let mut buf = vec![0; reader.output_buffer_size()];
        let frame = reader.next_frame(&mut buf).unwrap();
        let row = frame.line_size;
        for y in 0..m.width * 3 {
            for x in 0..m.width * 3 {
                let white = buf[y * row + x / 8] >> (7 - x % 8) & 1 == 1;
                assert_eq!(white, !m.is_dark(x / 3, y / 3), "pixel {x},{y}");
            }
        }
    }

    #[test]
    fn given_a_matrix_then_the_svg_has_its_size_and_colours() {
        let m = sample();
        let s = svg(&m, 8);
        let px = m.width * 8;
        assert!(
            s.contains(&format!("width=\"{px}\" height=\"{px}\"")),
            "{}",
            &s[..200]
        );
        assert!(s.contains("fill=\"#000000\"") && s.contains("fill=\"#ffffff\""));
    }
}
