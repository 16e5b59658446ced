//! QR code images from the core's module matrix (`pam_totp::qr::matrix`, quiet zone included):
//! a 1-bit greyscale PNG and an SVG, both written by hand.
//!
//! The PNG needs no compression library: its image data is a zlib stream of *stored* deflate
//! blocks, which every decoder reads. At 1 bit per pixel a typical code (49 modules with the
//! quiet zone, 10 px each) is about 30 KB. Only CRC-32 and Adler-32 are needed besides, a few
//! lines each — smaller than a dependency, and checked by the tests against known values and by
//! decoding the images with zbarimg.

use pam_totp::qr::Matrix;
use zeroize::Zeroizing;

/// Pixels per module in the images (scanners want several; print stays sharp).
pub const SCALE: usize = 10;

/// The PNG bytes of `m`, `scale` pixels per module, dark modules black on white.
pub fn png(m: &Matrix, scale: usize) -> Zeroizing<Vec<u8>> {
    let side = m.width * scale;
    let row_bytes = side.div_ceil(8);
    // Raw image data: each row is a filter byte (0 = none) and the packed pixels, 1 = white.
    let mut raw = Zeroizing::new(Vec::with_capacity((row_bytes + 1) * side));
    for y in 0..side {
        raw.push(0);
        let mut byte = 0u8;
        for x in 0..row_bytes * 8 {
            let white = x >= side || !m.is_dark(x / scale, y / scale);
            byte = (byte << 1) | u8::from(white);
            if x % 8 == 7 {
                raw.push(byte);
                byte = 0;
            }
        }
    }
    let mut out = Zeroizing::new(Vec::with_capacity(raw.len() + raw.len() / 65535 * 5 + 64));
    out.extend_from_slice(b"\x89PNG\r\n\x1a\n");
    let mut ihdr = Vec::with_capacity(13);
    ihdr.extend_from_slice(&(side as u32).to_be_bytes());
    ihdr.extend_from_slice(&(side as u32).to_be_bytes());
    // Bit depth 1, colour type 0 (greyscale), deflate, no filter method, no interlace.
    ihdr.extend_from_slice(&[1, 0, 0, 0, 0]);
    chunk(&mut out, b"IHDR", &ihdr);
    chunk(&mut out, b"IDAT", &zlib_stored(&raw));
    chunk(&mut out, b"IEND", &[]);
    out
}

fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    let mut crc = Crc32::new();
    crc.update(kind);
    crc.update(data);
    out.extend_from_slice(&crc.finish().to_be_bytes());
}

/// A zlib stream (RFC 1950) of stored deflate blocks (RFC 1951 §3.2.4).
fn zlib_stored(data: &[u8]) -> Zeroizing<Vec<u8>> {
    let mut out = Zeroizing::new(Vec::with_capacity(data.len() + data.len() / 65535 * 5 + 16));
    // CMF: deflate, 32 KiB window; FLG: no dictionary, check bits so that CMF*256+FLG % 31 == 0.
    out.extend_from_slice(&[0x78, 0x01]);
    let mut blocks = data.chunks(65535).peekable();
    if blocks.peek().is_none() {
        out.extend_from_slice(&[1, 0, 0, 0xff, 0xff]);
    }
    while let Some(block) = blocks.next() {
        let last = blocks.peek().is_none();
        out.push(u8::from(last));
        let len = block.len() as u16;
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(block);
    }
    out.extend_from_slice(&adler32(data).to_be_bytes());
    out
}

struct Crc32(u32);

impl Crc32 {
    fn new() -> Self {
        Crc32(0xffff_ffff)
    }
    fn update(&mut self, data: &[u8]) {
        for &b in data {
            self.0 ^= u32::from(b);
            for _ in 0..8 {
                let mask = (self.0 & 1).wrapping_neg();
                self.0 = (self.0 >> 1) ^ (0xedb8_8320 & mask);
            }
        }
    }
    fn finish(&self) -> u32 {
        !self.0
    }
}

fn adler32(data: &[u8]) -> u32 {
    let (mut a, mut b) = (1u32, 0u32);
    for chunk in data.chunks(5552) {
        for &x in chunk {
            a += u32::from(x);
            b += a;
        }
        a %= 65521;
        b %= 65521;
    }
    (b << 16) | a
}

/// The SVG text of `m`: a white square and one path of dark rectangles (runs of modules),
/// `scale` pixels per module as the nominal size.
pub fn svg(m: &Matrix, scale: usize) -> Zeroizing<String> {
    let w = m.width;
    let mut path = Zeroizing::new(String::new());
    for y in 0..w {
        let mut x = 0;
        while x < w {
            if m.is_dark(x, y) {
                let start = x;
                while x < w && m.is_dark(x, y) {
                    x += 1;
                }
                let run = x - start;
                path.push_str(&format!("M{start} {y}h{run}v1h-{run}z"));
            } else {
                x += 1;
            }
        }
    }
    let px = w * scale;
    let mut out = Zeroizing::new(String::with_capacity(path.len() + 400));
    out.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    out.push_str(&format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" version=\"1.1\" width=\"{px}\" height=\"{px}\" \
         viewBox=\"0 0 {w} {w}\" shape-rendering=\"crispEdges\">\n"
    ));
    out.push_str(&format!(
        "<rect x=\"0\" y=\"0\" width=\"{w}\" height=\"{w}\" fill=\"#ffffff\"/>\n"
    ));
    out.push_str("<path fill=\"#000000\" d=\"");
    out.push_str(&path);
    out.push_str("\"/>\n</svg>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_and_adler32_match_known_values() {
        let mut c = Crc32::new();
        c.update(b"123456789");
        assert_eq!(c.finish(), 0xcbf4_3926);
        let mut c = Crc32::new();
        c.update(b"IEND");
        assert_eq!(c.finish(), 0xae42_6082);
        assert_eq!(adler32(b"Wikipedia"), 0x11e6_0398);
        assert_eq!(adler32(b""), 1);
        // Long input: the modulus is applied often enough not to overflow.
        assert_eq!(adler32(&vec![0xff; 100_000]), {
            let (mut a, mut b) = (1u64, 0u64);
            for _ in 0..100_000 {
                a = (a + 255) % 65521;
                b = (b + a) % 65521;
            }
            ((b << 16) | a) as u32
        });
    }

    #[test]
    fn stored_blocks_split_at_64k() {
        let data = vec![7u8; 65535 * 2 + 10];
        let z = zlib_stored(&data);
        assert_eq!(z.len(), 2 + 3 * 5 + data.len() + 4);
        assert_eq!(z[2], 0); // first block not final
        assert_eq!(z[2 + 5 + 65535], 0);
        assert_eq!(z[2 + 2 * (5 + 65535)], 1); // last block final
        assert_eq!((0x78u32 * 256 + 0x01) % 31, 0);
    }

    #[test]
    fn png_has_the_expected_layout() {
        let m = pam_totp::qr::matrix("otpauth://totp/x:y?secret=JBSWY3DPEHPK3PXP").unwrap();
        let p = png(&m, 3);
        assert!(p.starts_with(b"\x89PNG\r\n\x1a\n"));
        let side = (m.width * 3) as u32;
        assert_eq!(&p[12..16], b"IHDR");
        assert_eq!(&p[16..20], &side.to_be_bytes());
        assert_eq!(&p[20..24], &side.to_be_bytes());
        assert_eq!(&p[24..26], &[1, 0]);
        assert!(p.ends_with(&[0, 0, 0, 0, b'I', b'E', b'N', b'D', 0xae, 0x42, 0x60, 0x82]));
    }

    #[test]
    fn svg_draws_each_dark_run_once() {
        let m = pam_totp::qr::matrix("hello").unwrap();
        let s = svg(&m, 8);
        let dark = m.dark.iter().filter(|d| **d).count();
        let drawn: usize = s
            .split('h')
            .skip(1)
            .filter_map(|t| t.split('v').next()?.parse::<usize>().ok())
            .sum();
        assert_eq!(drawn, dark);
        assert!(s.contains(&format!("viewBox=\"0 0 {0} {0}\"", m.width)));
    }
}
