//! The terminal: whether there is one, and reading a code with echo off.

use nix::sys::termios::{self, LocalFlags, SetArg, SpecialCharacterIndices, Termios};
use std::io::{self, BufRead, IsTerminal, Read, Write};
use std::os::fd::AsFd;
use zeroize::Zeroizing;

/// Both stdin and stdout are terminals: a person is there to answer.
pub fn interactive() -> bool {
    io::stdin().is_terminal() && io::stdout().is_terminal()
}

pub fn stdin_is_terminal() -> bool {
    io::stdin().is_terminal()
}

/// Restores the terminal settings when dropped.
struct EchoGuard(Termios);

impl Drop for EchoGuard {
    fn drop(&mut self) {
        let _ = termios::tcsetattr(io::stdin().as_fd(), SetArg::TCSANOW, &self.0);
    }
}

/// Shows `prompt` on stderr and reads one line from the terminal on stdin without echoing it.
/// `None` at end of input. The line is returned without its line break.
///
/// The terminal is put in raw-ish mode (no echo, no line editing, no signals) and the line is
/// assembled here, so that Ctrl-C ends the read *after* the settings are restored instead of
/// killing the process with echo still off.
pub fn read_hidden(prompt: &str) -> io::Result<Option<Zeroizing<String>>> {
    let mut err = io::stderr();
    err.write_all(prompt.as_bytes())?;
    err.flush()?;
    let stdin = io::stdin();
    let guard = match termios::tcgetattr(stdin.as_fd()) {
        Ok(orig) => {
            let mut quiet = orig.clone();
            quiet
                .local_flags
                .remove(LocalFlags::ECHO | LocalFlags::ICANON | LocalFlags::ISIG);
            quiet.control_chars[SpecialCharacterIndices::VMIN as usize] = 1;
            quiet.control_chars[SpecialCharacterIndices::VTIME as usize] = 0;
            termios::tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &quiet)?;
            Some(EchoGuard(orig))
        }
        // Not a terminal: plain line reading.
        Err(_) => None,
    };
    let result = if guard.is_some() {
        read_raw_line(&mut stdin.lock())
    } else {
        let mut line = Zeroizing::new(String::new());
        match stdin.lock().read_line(&mut line)? {
            0 => Ok(None),
            _ => Ok(Some(line)),
        }
    };
    drop(guard);
    if matches!(result, Ok(Some(_))) && stdin_is_terminal() {
        err.write_all(b"\n")?;
    }
    let Some(mut line) = result? else {
        return Ok(None);
    };
    while line.ends_with('\n') || line.ends_with('\r') {
        line.pop();
    }
    Ok(Some(line))
}

/// One line from a terminal in non-canonical mode: Enter ends it, Backspace edits it, Ctrl-D on
/// an empty line is end of input, Ctrl-C is an `Interrupted` error.
fn read_raw_line(input: &mut impl Read) -> io::Result<Option<Zeroizing<String>>> {
    let mut line = Zeroizing::new(String::new());
    let mut byte = [0u8; 1];
    loop {
        if input.read(&mut byte)? == 0 {
            return Ok((!line.is_empty()).then_some(line));
        }
        match byte[0] {
            b'\r' | b'\n' => return Ok(Some(line)),
            0x03 => return Err(io::Error::new(io::ErrorKind::Interrupted, "interrupted")),
            0x04 if line.is_empty() => return Ok(None),
            0x7f | 0x08 => {
                line.pop();
            }
            b if b.is_ascii() && !b.is_ascii_control() => line.push(char::from(b)),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(bytes: &[u8]) -> io::Result<Option<String>> {
        read_raw_line(&mut &bytes[..]).map(|o| o.map(|z| z.to_string()))
    }

    #[test]
    fn raw_line_editing() {
        assert_eq!(read(b"123456\r").unwrap().as_deref(), Some("123456"));
        assert_eq!(read(b"12x\x7f3\n").unwrap().as_deref(), Some("123"));
        assert_eq!(read(b"\x04").unwrap(), None);
        assert_eq!(read(b"").unwrap(), None);
        assert_eq!(
            read(b"12\x03").unwrap_err().kind(),
            io::ErrorKind::Interrupted
        );
    }
}
