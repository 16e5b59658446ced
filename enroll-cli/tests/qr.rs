//! The QR codes decode to the otpauth URI of the JSON output: the PNG (zbarimg), the SVG
//! (rasterised by rsvg-convert, then zbarimg) and the terminal's half blocks (drawn into an
//! image here, two pixel rows per character, then zbarimg).

mod common;

use common::{zbarimg, zbarimg_svg, TestDir};
use std::fs;

/// The half-block lines of a terminal QR code as an image: PBM (netpbm), `scale` pixels per
/// module, 1 = black.
fn half_blocks_to_pbm(lines: &[&str], scale: usize) -> Vec<u8> {
    let width = lines.iter().map(|l| l.chars().count()).max().unwrap();
    let mut rows: Vec<Vec<bool>> = Vec::new();
    for l in lines {
        let mut top = vec![false; width];
        let mut bottom = vec![false; width];
        for (x, c) in l.chars().enumerate() {
            let (t, b) = match c {
                '█' => (true, true),
                '▀' => (true, false),
                '▄' => (false, true),
                ' ' => (false, false),
                other => panic!("unexpected character {other:?} in the QR code"),
            };
            top[x] = t;
            bottom[x] = b;
        }
        rows.push(top);
        rows.push(bottom);
    }
    // A white border besides the code's own quiet zone, in case the lines were trimmed.
    let border = 4;
    let (w, h) = (
        (width + 2 * border) * scale,
        (rows.len() + 2 * border) * scale,
    );
    let mut out = format!("P1\n{w} {h}\n").into_bytes();
    for y in 0..h {
        for x in 0..w {
            let (mx, my) = (x / scale, y / scale);
            let dark = mx >= border
                && my >= border
                && rows
                    .get(my - border)
                    .and_then(|r| r.get(mx - border))
                    .copied()
                    .unwrap_or(false);
            out.push(if dark { b'1' } else { b'0' });
            out.push(if x + 1 == w { b'\n' } else { b' ' });
        }
    }
    out
}

/// Lines of the output made only of half blocks and spaces (the quiet zone is blank lines).
fn qr_lines(text: &str) -> Vec<&str> {
    text.lines()
        .filter(|l| l.chars().count() > 20 && l.chars().all(|c| " ▀▄█".contains(c)))
        .collect()
}

#[test]
fn png_svg_and_terminal_codes_decode_to_the_json_uri() {
    let t = TestDir::new("qr");
    let png = t.path("code.png");
    let svg = t.path("code.svg");
    let r = t.run(&[
        "enroll",
        "alice",
        "--json",
        "--qr",
        "terminal",
        "--issuer",
        "build 01 (test)",
        "--qr-png",
        png.to_str().unwrap(),
        "--qr-svg",
        svg.to_str().unwrap(),
    ]);
    let j = r.ok().json();
    let uri = j["otpauth_uri"].as_str().unwrap().to_string();
    assert!(
        uri.starts_with("otpauth://totp/build%2001%20%28test%29:alice?secret="),
        "{uri}"
    );

    use std::os::unix::fs::PermissionsExt;
    for p in [&png, &svg] {
        let mode = fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{} holds the key", p.display());
    }

    assert_eq!(zbarimg(&png), uri, "PNG");

    assert_eq!(zbarimg_svg(&t, &svg), uri, "SVG");

    // The terminal code went to stderr (JSON on stdout).
    let lines = qr_lines(&r.stderr);
    assert!(lines.len() > 10, "{}", r.stderr);
    let widest = lines.iter().map(|l| l.chars().count()).max().unwrap();
    assert!(widest <= 80, "fits an 80-column terminal: {widest}");
    let pbm = t.path("terminal.pbm");
    fs::write(&pbm, half_blocks_to_pbm(&lines, 6)).unwrap();
    assert_eq!(zbarimg(&pbm), uri, "terminal");
}

#[test]
fn every_algorithm_and_digits_decode() {
    let t = TestDir::new("qr-params");
    for (alg, digits, period) in [
        ("SHA1", "8", "15"),
        ("SHA256", "6", "60"),
        ("SHA512", "8", "300"),
    ] {
        let png = t.path(&format!("{alg}.png"));
        let r = t.run(&[
            "enroll",
            "bob",
            "--issuer",
            "build-01",
            "--algorithm",
            alg,
            "--digits",
            digits,
            "--period",
            period,
            "--qr-png",
            png.to_str().unwrap(),
        ]);
        r.ok();
        let uri = r
            .stdout
            .lines()
            .find_map(|l| l.trim().strip_prefix("URI:"))
            .unwrap()
            .trim()
            .to_string();
        assert!(uri.ends_with(&format!("&algorithm={alg}&digits={digits}&period={period}")));
        assert_eq!(zbarimg(&png), uri, "{alg} PNG");
        // The terminal code on stdout decodes too, and fits 80 columns even with SHA512 keys.
        let lines = qr_lines(&r.stdout);
        let widest = lines.iter().map(|l| l.chars().count()).max().unwrap();
        assert!(widest <= 80, "{alg}: {widest} columns");
        let pbm = t.path(&format!("{alg}.pbm"));
        fs::write(&pbm, half_blocks_to_pbm(&lines, 6)).unwrap();
        assert_eq!(zbarimg(&pbm), uri, "{alg} terminal");
    }
}

/// `--qr-png ~mallory/out/x` run by root, with `out` a link to /etc: nothing may be written
/// through the link, at any depth of the path.
#[test]
fn given_a_symlinked_parent_directory_then_refused_and_nothing_written_through_it() {
    let t = TestDir::new("qr-symlinked-parent");
    let target = t.path("etc");
    fs::create_dir(&target).unwrap();
    fs::create_dir(target.join("sub")).unwrap();
    std::os::unix::fs::symlink(&target, t.path("out")).unwrap();
    for (flag, rel) in [
        ("--qr-png", "out/x.png"),
        ("--qr-svg", "out/sub/x.svg"),
        ("--qr-png", "out/../out/x.png"),
    ] {
        let p = t.path(rel);
        let r = t.run(&[
            "enroll",
            "alice",
            "--issuer",
            "build-01",
            flag,
            p.to_str().unwrap(),
        ]);
        r.fails(1);
        assert!(
            r.stderr.contains("is a symbolic link")
                && r.stderr
                    .contains(&format!("give the real path: {}", target.display())),
            "{}",
            r.transcript()
        );
        assert!(
            fs::read_dir(&target)
                .unwrap()
                .chain(fs::read_dir(target.join("sub")).unwrap())
                .all(|e| e.unwrap().file_type().unwrap().is_dir()),
            "nothing written through the link ({rel})"
        );
        assert!(!t.users().join("alice.toml").exists(), "nothing enrolled");
    }
}

#[test]
fn given_an_ordinary_relative_directory_then_png_and_svg_are_written_and_decode() {
    let t = TestDir::new("qr-relative");
    fs::create_dir_all(t.path("out/sub")).unwrap();
    let r = common::Run::from_output(
        &[],
        t.cmd(&[
            "enroll",
            "alice",
            "--json",
            "--issuer",
            "build-01",
            "--qr-png",
            "out/sub/code.png",
            "--qr-svg",
            "./out/code.svg",
        ])
        .current_dir(&t.root)
        .output()
        .unwrap(),
    );
    let uri = r.ok().json()["otpauth_uri"].as_str().unwrap().to_string();
    assert_eq!(zbarimg(&t.path("out/sub/code.png")), uri, "PNG");
    assert_eq!(zbarimg_svg(&t, &t.path("out/code.svg")), uri, "SVG");
    let leftovers: Vec<_> = fs::read_dir(t.path("out"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "no temp files: {leftovers:?}");
}
