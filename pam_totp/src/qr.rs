//! QR codes of the otpauth URI: a module matrix, and half-block text for terminals and the PAM
//! conversation. (PNG and SVG are drawn by the CLI from [`matrix`].)
#![forbid(unsafe_code)]

use qrcode::{Color, EcLevel, QrCode};
use zeroize::Zeroizing;

/// Light modules around the code, as scanners want (the standard asks for 4).
pub const QUIET_ZONE: usize = 4;

/// Dark (`true`) and light modules, row by row, quiet zone included. Zeroized on drop: it
/// encodes the key.
pub struct Matrix {
    pub width: usize,
    pub dark: Zeroizing<Vec<bool>>,
}

impl Matrix {
    pub fn is_dark(&self, x: usize, y: usize) -> bool {
        x < self.width && y < self.width && self.dark[y * self.width + x]
    }
}

pub fn matrix(data: &str) -> Result<Matrix, String> {
    // Medium error correction keeps the code small enough for an 80-column terminal.
    let code = QrCode::with_error_correction_level(data.as_bytes(), EcLevel::M)
        .map_err(|e| format!("cannot make a QR code: {e}"))?;
    let inner = code.width();
    let colors = Zeroizing::new(
        code.to_colors()
            .into_iter()
            .map(|c| c == Color::Dark)
            .collect::<Vec<bool>>(),
    );
    let width = inner + 2 * QUIET_ZONE;
    let mut dark = Zeroizing::new(vec![false; width * width]);
    for y in 0..inner {
        for x in 0..inner {
            dark[(y + QUIET_ZONE) * width + x + QUIET_ZONE] = colors[y * inner + x];
        }
    }
    Ok(Matrix { width, dark })
}

const BLACK_ON_WHITE: &str = "\x1b[30;107m";
const RESET: &str = "\x1b[0m";

/// Two module rows per text line with `▀ ▄ █`, dark modules drawn. With `ansi`, each line is
/// forced black on white so the code reads on dark and light terminal themes alike.
pub fn half_blocks(data: &str, ansi: bool) -> Result<Zeroizing<String>, String> {
    let m = matrix(data)?;
    let mut out = Zeroizing::new(String::with_capacity(m.width * m.width * 2));
    for y in (0..m.width).step_by(2) {
        if ansi {
            out.push_str(BLACK_ON_WHITE);
        }
        for x in 0..m.width {
            out.push(match (m.is_dark(x, y), m.is_dark(x, y + 1)) {
                (true, true) => '█',
                (true, false) => '▀',
                (false, true) => '▄',
                (false, false) => ' ',
            });
        }
        if ansi {
            out.push_str(RESET);
        }
        out.push('\n');
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_typical_uri_fits_an_80_column_terminal() {
        let uri = "otpauth://totp/build-01:alice?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&issuer=build-01&algorithm=SHA1&digits=6&period=30";
        let text = half_blocks(uri, false).unwrap();
        let widest = text.lines().map(|l| l.chars().count()).max().unwrap();
        assert!(widest <= 80, "{widest}");
        assert!(text.lines().count() <= 40);
    }

    #[test]
    fn quiet_zone_is_light_and_finder_pattern_is_dark() {
        let m = matrix("hello").unwrap();
        assert!(!m.is_dark(0, 0) && !m.is_dark(QUIET_ZONE - 1, QUIET_ZONE));
        assert!(m.is_dark(QUIET_ZONE, QUIET_ZONE));
    }

    #[test]
    fn ansi_lines_are_wrapped_in_colours() {
        let t = half_blocks("x", true).unwrap();
        assert!(t
            .lines()
            .all(|l| l.starts_with(BLACK_ON_WHITE) && l.ends_with(RESET)));
    }
}
