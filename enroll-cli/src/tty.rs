//! The terminal: whether there is one, and reading a code with echo off.

use nix::sys::termios::{self, LocalFlags, SetArg, Termios};
use std::io::{self, BufRead, IsTerminal, Write};
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
pub fn read_hidden(prompt: &str) -> io::Result<Option<Zeroizing<String>>> {
    let mut err = io::stderr();
    err.write_all(prompt.as_bytes())?;
    err.flush()?;
    let stdin = io::stdin();
    let guard = match termios::tcgetattr(stdin.as_fd()) {
        Ok(orig) => {
            let mut quiet = orig.clone();
            quiet.local_flags.remove(LocalFlags::ECHO);
            quiet.local_flags.insert(LocalFlags::ECHONL);
            termios::tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &quiet)?;
            Some(EchoGuard(orig))
        }
        Err(_) => None,
    };
    let mut line = Zeroizing::new(String::new());
    let n = stdin.lock().read_line(&mut line)?;
    drop(guard);
    if n == 0 {
        return Ok(None);
    }
    while line.ends_with('\n') || line.ends_with('\r') {
        line.pop();
    }
    Ok(Some(line))
}
