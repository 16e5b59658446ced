use super::*;
use pam_totp::selfservice::protocol::Reply;
use std::io::Cursor;

/// A reader that hands out its bytes a few at a time, as a pipe may.
struct Trickle {
    data: Vec<u8>,
    at: usize,
    step: usize,
}

impl Read for Trickle {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.step.min(buf.len()).min(self.data.len() - self.at);
        buf[..n].copy_from_slice(&self.data[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

fn front(input: &str) -> FrontEnd<Cursor<Vec<u8>>, Vec<u8>> {
    FrontEnd::new(Cursor::new(input.as_bytes().to_vec()), Vec::new())
}

fn sent(f: &FrontEnd<Cursor<Vec<u8>>, Vec<u8>>) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&f.output)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

const HELLO: &str = "{\"type\":\"hello\",\"version\":1,\"verb\":{\"verb\":\"recovery\"}}\n";

#[test]
fn given_lines_in_pieces_then_each_is_returned_whole_and_in_order() {
    let mut lines = Lines::new(Trickle {
        data: b"first\nsecond line\n\nlast\n".to_vec(),
        at: 0,
        step: 3,
    });
    for want in [&b"first"[..], b"second line", b"", b"last"] {
        assert_eq!(lines.next_line().unwrap().as_slice(), want);
    }
    assert!(matches!(lines.next_line(), Err(LineError::Eof)));
}

#[test]
fn given_a_line_of_max_line_bytes_then_it_is_read_and_one_byte_more_is_refused() {
    let exact = format!("{}\n", "a".repeat(MAX_LINE));
    let mut lines = Lines::new(Cursor::new(exact.into_bytes()));
    assert_eq!(lines.next_line().unwrap().len(), MAX_LINE);

    let over = format!("{}\n", "a".repeat(MAX_LINE + 1));
    let mut lines = Lines::new(Cursor::new(over.into_bytes()));
    assert!(matches!(lines.next_line(), Err(LineError::TooLong)));
}

#[test]
fn given_an_endless_line_then_reading_stops_at_the_limit() {
    // An infinite source: the reader must give up, not grow.
    let mut lines = Lines::new(io::repeat(b'x'));
    assert!(matches!(lines.next_line(), Err(LineError::TooLong)));
    assert_eq!(lines.buf.len(), MAX_LINE + 1);
}

#[test]
fn given_input_ending_mid_line_then_truncated() {
    let mut lines = Lines::new(Cursor::new(b"{\"type\":\"ca".to_vec()));
    assert!(matches!(lines.next_line(), Err(LineError::Truncated)));
}

#[test]
fn given_a_hello_of_this_version_then_its_verb() {
    let mut f = front(HELLO);
    assert_eq!(f.hello().unwrap(), Verb::Recovery {});
}

#[test]
fn given_a_bad_opening_then_refused_with_the_version_message() {
    for bad in [
        "garbage\n",
        "{\"type\":\"hello\",\"version\":2,\"verb\":{\"verb\":\"status\"}}\n",
        "{\"type\":\"answer\",\"text\":\"x\"}\n",
        "{\"type\":\"hello\",\"version\":1,\"verb\":{\"verb\":\"status\"},\"user\":\"root\"}\n",
    ] {
        assert_eq!(front(bad).hello().unwrap_err(), VERSION_MISMATCH, "{bad}");
    }
    assert!(front("").hello().unwrap_err().contains("closed"));
}

#[test]
fn given_a_prompt_then_the_answer_comes_back_and_the_prompt_was_sent() {
    let mut f = front("{\"type\":\"answer\",\"text\":\"123456\"}\n");
    assert_eq!(f.prompt_hidden("Code: ").unwrap().as_slice(), b"123456");
    let out = sent(&f);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0]["type"], "prompt");
    assert_eq!(out[0]["text"], "Code: ");
    assert_eq!(out[0]["echo"], false);
    assert!(f.fault().is_none());
}

#[test]
fn given_no_answer_then_a_conversation_error_and_the_fault_is_kept() {
    for (input, fault) in [
        ("{\"type\":\"cancel\"}\n", "cancelled"),
        ("", "closed"),
        ("not json\n", "something else"),
        (HELLO, "something else"),
        (
            "{\"type\":\"answer\",\"text\":\"1\",\"more\":1}\n",
            "something else",
        ),
    ] {
        let mut f = front(input);
        assert_eq!(f.ask("Password: ", true), Err(ConvError), "{input}");
        assert!(
            f.fault().unwrap().contains(fault),
            "{input}: {:?}",
            f.fault()
        );
    }
}

#[test]
fn given_the_first_fault_then_later_ones_do_not_replace_it() {
    let mut f = front("{\"type\":\"cancel\"}\n");
    assert!(f.ask("a", false).is_err());
    assert!(f.ask("b", false).is_err());
    assert_eq!(f.fault(), Some("cancelled"));
}

#[test]
fn given_replies_then_one_line_each() {
    let mut f = front("");
    f.info("hello").unwrap();
    f.send(Reply::Done {
        message: "ok".into(),
    })
    .unwrap();
    let out = sent(&f);
    assert_eq!(out[0]["type"], "info");
    assert_eq!(out[1]["type"], "done");
    assert_eq!(out[1]["message"], "ok");
}

/// A writer to a front-end that went away.
struct Gone;

impl Write for Gone {
    fn write(&mut self, _: &[u8]) -> io::Result<usize> {
        Err(io::ErrorKind::BrokenPipe.into())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[test]
fn given_a_dead_front_end_then_sending_fails_without_panic() {
    let mut f = FrontEnd::new(Cursor::new(Vec::new()), Gone);
    assert_eq!(f.info("x"), Err(ConvError));
    assert!(f.fault().unwrap().contains("cannot write"));
    assert_eq!(f.prompt_hidden("Code: "), Err(ConvError));
}
