//! How a new key is shown, by `enroll` as root and by a user enrolling themselves: QR code
//! (terminal, PNG, SVG), account, issuer, key in groups of four, type, URI and the recovery
//! codes; or SPEC §5's enrolment JSON.

use crate::cli::QrMode;
use crate::error::{CliError, Result};
use crate::images;
use crate::output::{self, errout, print_json};
use pam_totp::escape::terminal_safe;
use pam_totp::qr;
use pam_totp::secret::group4;
use pam_totp::selfservice::protocol::NewKey;
use serde::Serialize;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

/// QR images written for a key (removed again if the enrolment does not go ahead).
pub struct Images(Vec<(PathBuf, &'static str, output::Written)>);

impl Images {
    /// Writes the PNG and SVG asked for (mode 0600: they hold the key), with the rights of
    /// whoever runs the command; on failure nothing written stays.
    pub fn write(key: &NewKey, png: Option<&Path>, svg: Option<&Path>) -> Result<Images> {
        let mut images = Images(Vec::new());
        if png.is_none() && svg.is_none() {
            return Ok(images);
        }
        let matrix = qr::matrix(&key.otpauth_uri).map_err(CliError::new)?;
        let written = (|| -> Result<()> {
            if let Some(p) = png {
                let bytes = images::png(&matrix, images::SCALE).map_err(CliError::new)?;
                let w = output::write_output(p, &bytes, 0o600)?;
                images.0.push((p.to_path_buf(), "PNG", w));
            }
            if let Some(p) = svg {
                let text = svg_of(&matrix);
                let w = output::write_output(p, text.as_bytes(), 0o600)?;
                images.0.push((p.to_path_buf(), "SVG", w));
            }
            Ok(())
        })();
        match written {
            Ok(()) => Ok(images),
            Err(e) => {
                images.remove();
                Err(e)
            }
        }
    }

    pub fn remove(&self) {
        for (_, _, w) in &self.0 {
            w.remove();
        }
    }
}

/// The QR code of `key` as SVG text, as `--qr-svg` writes it.
pub fn svg(key: &NewKey) -> Result<Zeroizing<String>> {
    Ok(svg_of(
        &qr::matrix(&key.otpauth_uri).map_err(CliError::new)?,
    ))
}

fn svg_of(matrix: &qr::Matrix) -> Zeroizing<String> {
    images::svg(matrix, images::SCALE)
}

/// The key's type in words: "TOTP, SHA1, 6 digits, 30 s".
pub fn kind(key: &NewKey) -> String {
    key.params().map_or_else(|| "?".into(), |p| p.describe())
}

#[derive(Serialize)]
struct EnrollJson<'a> {
    user: &'a str,
    issuer: &'a str,
    account: &'a str,
    secret: &'a str,
    algorithm: &'a str,
    digits: u8,
    period: u32,
    otpauth_uri: &'a str,
    recovery_codes: Vec<&'a str>,
    state: &'a str,
}

/// The terminal QR code on stderr (beside JSON on stdout).
pub fn qr_on_stderr(key: &NewKey) -> Result<()> {
    let ansi = std::io::stderr().is_terminal();
    let text = qr::half_blocks(&key.otpauth_uri, ansi).map_err(CliError::new)?;
    errout!("{}", &*text);
    Ok(())
}

/// SPEC §5's enrolment JSON on stdout (the terminal QR code on stderr if asked for).
pub fn json(key: &NewKey, state: &str, qr_mode: QrMode) -> Result<()> {
    if qr_mode == QrMode::Terminal {
        qr_on_stderr(key)?;
    }
    print_json(&EnrollJson {
        user: &key.user,
        issuer: &key.issuer,
        account: &key.account,
        secret: &key.secret,
        algorithm: &key.algorithm,
        digits: key.digits,
        period: key.period,
        otpauth_uri: &key.otpauth_uri,
        recovery_codes: key.recovery_codes.iter().map(|c| c.as_str()).collect(),
        state,
    })
}

/// The key for people, after `heading`.
pub fn text(
    key: &NewKey,
    heading: &str,
    qr_mode: QrMode,
    ansi: bool,
    images: &Images,
) -> Result<Zeroizing<String>> {
    let mut t = Zeroizing::new(String::with_capacity(4096));
    t.push_str(heading);
    t.push_str("\n\n");
    if qr_mode == QrMode::Terminal {
        t.push_str(
            "Scan this QR code with an authenticator app (Aegis, FreeOTP, Google Authenticator...):\n",
        );
        t.push_str(&qr::half_blocks(&key.otpauth_uri, ansi).map_err(CliError::new)?);
        t.push_str("Or enter the key by hand:\n");
    } else {
        t.push_str(
            "Enter this in an authenticator app (Aegis, FreeOTP, Google Authenticator...):\n",
        );
    }
    t.push_str(&format!(
        "  Account: {}\n  Issuer:  {}\n  Key:     ",
        terminal_safe(&key.account),
        terminal_safe(&key.issuer)
    ));
    t.push_str(&group4(&key.secret));
    t.push_str(&format!(
        "\n  Type:    {} (time-based)\n  URI:     ",
        kind(key)
    ));
    t.push_str(&terminal_safe(&key.otpauth_uri));
    t.push_str("\n\nRecovery codes (each works once in place of a code; note them now, they are not shown again):\n");
    for c in &key.recovery_codes {
        t.push_str("  ");
        t.push_str(&terminal_safe(c));
        t.push('\n');
    }
    for (p, kind, _) in &images.0 {
        t.push_str(&format!(
            "\nQR code written to {} ({kind}, mode 0600: it holds the key; delete it once scanned).",
            p.display()
        ));
    }
    if !images.0.is_empty() {
        t.push('\n');
    }
    t.push('\n');
    Ok(t)
}

/// `--qr`, or its default: terminal, none with `--json`.
pub fn qr_mode(qr: Option<QrMode>, json: bool) -> QrMode {
    qr.unwrap_or(if json { QrMode::None } else { QrMode::Terminal })
}

/// Shows a new pending key as `enroll` does: SPEC §5's JSON, or the text under `heading`.
pub fn show_pending(
    key: &NewKey,
    json: bool,
    qr: Option<QrMode>,
    heading: &str,
    images: &Images,
) -> Result<()> {
    let qr_mode = qr_mode(qr, json);
    if json {
        return self::json(key, "pending", qr_mode);
    }
    let ansi = std::io::stdout().is_terminal();
    output::write_stdout(text(key, heading, qr_mode, ansi, images)?.as_bytes())
}
