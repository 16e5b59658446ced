//! The helper's end of the protocol (`pam_totp::selfservice::protocol`): lines read with a
//! bounded buffer (never more than `MAX_LINE + 1` bytes held, wiped when dropped, as lines carry
//! passwords and codes), replies written as whole lines. Every line is hostile input: one that
//! is too long, not one message, or not what was asked for ends the exchange.

use crate::pam::Prompter;
use pam_totp::flow::{ConvError, Conversation};
use pam_totp::selfservice::protocol::{self, Reply, Request, Verb, MAX_LINE, VERSION};
use pam_totp::selfservice::Relay;
use std::fmt;
use std::io::{self, Read, Write};
use zeroize::{Zeroize, Zeroizing};

/// Why a line could not be read.
#[derive(Debug)]
pub enum LineError {
    /// The front-end closed its end (at a line boundary).
    Eof,
    /// More than `MAX_LINE` bytes without a newline.
    TooLong,
    /// The front-end closed its end in the middle of a line.
    Truncated,
    Io(io::Error),
}

impl fmt::Display for LineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LineError::Eof => f.write_str("the front-end closed the connection"),
            LineError::TooLong => write!(f, "the front-end sent a line over {MAX_LINE} bytes"),
            LineError::Truncated => f.write_str("the front-end sent an unfinished line"),
            LineError::Io(e) => write!(f, "cannot read from the front-end: {e}"),
        }
    }
}

/// The message for a first line that is not a `Hello` of this version.
pub const VERSION_MISMATCH: &str =
    "the pam-totp front-end and helper differ in version; reinstall pam-totp";

/// Reads lines from `input` without ever holding more than `MAX_LINE + 1` bytes.
pub struct Lines<R> {
    input: R,
    buf: Zeroizing<Vec<u8>>,
    filled: usize,
}

impl<R: Read> Lines<R> {
    pub fn new(input: R) -> Lines<R> {
        Lines {
            input,
            buf: Zeroizing::new(vec![0; MAX_LINE + 1]),
            filled: 0,
        }
    }

    /// The next line, without its newline.
    pub fn next_line(&mut self) -> Result<Zeroizing<Vec<u8>>, LineError> {
        loop {
            if let Some(end) = self.buf[..self.filled].iter().position(|&b| b == b'\n') {
                let line = Zeroizing::new(self.buf[..end].to_vec());
                self.buf.copy_within(end + 1..self.filled, 0);
                self.filled -= end + 1;
                self.buf[self.filled..].zeroize();
                return Ok(line);
            }
            if self.filled == self.buf.len() {
                return Err(LineError::TooLong);
            }
            match self.input.read(&mut self.buf[self.filled..]) {
                Ok(0) if self.filled == 0 => return Err(LineError::Eof),
                Ok(0) => return Err(LineError::Truncated),
                Ok(n) => self.filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(LineError::Io(e)),
            }
        }
    }
}

/// The conversation with the front-end: prompts become [`Reply::Prompt`] and wait for one
/// [`Request::Answer`]; anything else (a cancel, the end of input, a bad line) is a
/// conversation error, and the first such fault is kept for the log.
pub struct FrontEnd<R, W> {
    lines: Lines<R>,
    output: W,
    fault: Option<String>,
}

impl<R: Read, W: Write> FrontEnd<R, W> {
    pub fn new(input: R, output: W) -> FrontEnd<R, W> {
        FrontEnd {
            lines: Lines::new(input),
            output,
            fault: None,
        }
    }

    /// The opening line: a `Hello` of this protocol version, and the verb it asks for.
    pub fn hello(&mut self) -> Result<Verb, String> {
        let line = self.lines.next_line().map_err(|e| e.to_string())?;
        match protocol::decode::<Request>(&line) {
            Some(Request::Hello { version, verb }) if version == VERSION => Ok(verb),
            _ => Err(VERSION_MISMATCH.into()),
        }
    }

    /// Asks the user and waits for the answer.
    pub fn ask(&mut self, text: &str, echo: bool) -> Result<Zeroizing<Vec<u8>>, ConvError> {
        self.send(Reply::Prompt {
            text: text.into(),
            echo,
        })?;
        let line = self
            .lines
            .next_line()
            .map_err(|e| self.note(e.to_string()))?;
        match protocol::decode::<Request>(&line) {
            Some(Request::Answer { text }) => Ok(Zeroizing::new(text.as_bytes().to_vec())),
            Some(Request::Cancel {}) => Err(self.note("cancelled".into())),
            Some(Request::Hello { .. }) | None => {
                Err(self.note("the front-end sent something else than an answer".into()))
            }
        }
    }

    /// Waits for the front-end's word that it has shown what was sent (an [`Request::Answer`]).
    fn await_shown(&mut self) -> Result<(), ConvError> {
        let line = self
            .lines
            .next_line()
            .map_err(|e| self.note(e.to_string()))?;
        match protocol::decode::<Request>(&line) {
            Some(Request::Answer { .. }) => Ok(()),
            Some(Request::Cancel {}) => Err(self.note("cancelled".into())),
            Some(Request::Hello { .. }) | None => {
                Err(self.note("the front-end did not confirm what it was sent".into()))
            }
        }
    }

    /// The first fault of the exchange (why a conversation error happened), if any.
    pub fn fault(&self) -> Option<&str> {
        self.fault.as_deref()
    }

    fn note(&mut self, why: String) -> ConvError {
        self.fault.get_or_insert(why);
        ConvError
    }
}

impl<R: Read, W: Write> Conversation for FrontEnd<R, W> {
    fn prompt_hidden(&mut self, prompt: &str) -> Result<Zeroizing<Vec<u8>>, ConvError> {
        self.ask(prompt, false)
    }

    fn info(&mut self, text: &str) -> Result<(), ConvError> {
        self.send(Reply::Info { text: text.into() })
    }
}

impl<R: Read, W: Write> Relay for FrontEnd<R, W> {
    fn send(&mut self, reply: Reply) -> Result<(), ConvError> {
        let line = protocol::encode(&reply);
        let written = self
            .output
            .write_all(line.as_bytes())
            .and_then(|()| self.output.flush());
        written.map_err(|e| self.note(format!("cannot write to the front-end: {e}")))
    }

    fn shown(&mut self) -> Result<(), ConvError> {
        self.await_shown()
    }
}

impl<R: Read, W: Write> Prompter for FrontEnd<R, W> {
    fn ask(&mut self, text: &str, echo: bool) -> Result<Zeroizing<Vec<u8>>, ConvError> {
        FrontEnd::ask(self, text, echo)
    }

    fn show(&mut self, text: &str) -> Result<(), ConvError> {
        self.info(text)
    }
}

#[cfg(test)]
#[path = "relay_tests.rs"]
mod tests;
