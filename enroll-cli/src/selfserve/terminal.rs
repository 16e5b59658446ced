//! Self-service at a terminal: prompts on stderr (hidden for passwords and codes, from the
//! terminal), the QR code, key and recovery codes as text, or SPEC §5's JSON with `--json`.

use super::{own_name, Ask, Front};
use crate::cli::QrMode;
use crate::disable::DisableJson;
use crate::error::{CliError, Result};
use crate::output::{errout, erroutln, out, outln, print_json, write_stdout};
use crate::show_key::{self, Images};
use crate::status;
use crate::tty;
use pam_totp::escape::terminal_safe;
use pam_totp::selfservice::protocol::{NewKey, Verb};
use pam_totp::status::UserStatus;
use serde::Serialize;
use std::io::{BufRead, IsTerminal};
use zeroize::Zeroizing;

pub struct Terminal {
    json: bool,
    qr: QrMode,
    disable: bool,
}

impl Terminal {
    pub fn new(ask: &Ask) -> Terminal {
        Terminal {
            json: ask.json,
            qr: ask.qr,
            disable: ask.verb == Verb::Disable {},
        }
    }
}

#[derive(Serialize)]
struct RecoveryJson<'a> {
    user: &'a str,
    recovery_codes: Vec<&'a str>,
}

impl Front for Terminal {
    fn prompt(&mut self, text: &str, echo: bool) -> Result<Option<Zeroizing<String>>> {
        let text = terminal_safe(text);
        let read = if echo {
            errout!("{text}");
            let mut line = Zeroizing::new(String::new());
            match std::io::stdin().lock().read_line(&mut line) {
                Ok(0) => Ok(None),
                Ok(_) => {
                    while line.ends_with('\n') || line.ends_with('\r') {
                        line.pop();
                    }
                    Ok(Some(line))
                }
                Err(e) => Err(e),
            }
        } else {
            tty::read_hidden(&text)
        };
        read.map_err(|e| CliError::new(format!("cannot read your answer: {e}")))
    }

    fn info(&mut self, text: &str) -> Result<()> {
        erroutln!("{}", terminal_safe(text));
        Ok(())
    }

    fn status(&mut self, s: &UserStatus) -> Result<()> {
        if self.json {
            print_json(s)
        } else {
            out!("{}", status::human(s))
        }
    }

    fn new_key(&mut self, k: &NewKey, images: &Images) -> Result<()> {
        if !self.json {
            let heading = format!(
                "A new key for {} (your logins keep the old one, if any, until a code \
                 from the app confirms this one).",
                terminal_safe(&k.user)
            );
            let ansi = std::io::stdout().is_terminal();
            write_stdout(show_key::text(k, &heading, self.qr, ansi, images)?.as_bytes())
        } else if self.qr == QrMode::Terminal {
            // The QR code only (on stderr); the JSON follows once the key is active.
            show_key::qr_on_stderr(k)
        } else {
            Ok(())
        }
    }

    fn recovery_codes(&mut self, codes: &[Zeroizing<String>]) -> Result<()> {
        if self.json {
            let me = own_name().unwrap_or_default();
            return print_json(&RecoveryJson {
                user: &me,
                recovery_codes: codes.iter().map(|c| c.as_str()).collect(),
            });
        }
        outln!(
            "New recovery codes (each works once in place of a code; note them now, they are \
             not shown again):"
        )?;
        for c in codes {
            outln!("  {}", terminal_safe(c))?;
        }
        Ok(())
    }

    fn done(&mut self, key: Option<&NewKey>, message: &str) -> Result<()> {
        match (key, self.json) {
            (Some(k), true) => show_key::json(k, "active", QrMode::None),
            (None, true) if self.disable => print_json(&DisableJson {
                user: &own_name().unwrap_or_default(),
                disabled: true,
            }),
            (_, true) => Ok(()),
            (_, false) if message.is_empty() => Ok(()),
            (_, false) => outln!("{}", terminal_safe(message)),
        }
    }
}
