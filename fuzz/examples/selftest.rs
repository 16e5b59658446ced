//! Self-test of the fuzz harnesses' oracles (`cargo run --example selftest` in fuzz/): the
//! login harness accepts what a real login accepts and refuses the rest, so that a fuzzer
//! finding "accepted but not acceptable" means a bug in the module, not in the harness.
use pam_totp::totp::Generator;
use pam_totp_fuzz::login::{self, RECOVERY_CODES};

fn main() {
    let s = login::setup();
    let mut failures = 0;
    let mut expect = |account: usize, answer: &[u8], want: bool| {
        let (v, prompts) = login::login(account, answer);
        let ok = login::is_success(&v) == want
            && login::acceptable(account, answer) == want
            && prompts == 1;
        println!(
            "{} account={account} answer={:?} -> {:?} ({})",
            if ok { "ok  " } else { "FAIL" },
            String::from_utf8_lossy(answer),
            v.code,
            v.reason
        );
        failures += usize::from(!ok);
    };
    for (i, a) in s.accounts.iter().enumerate() {
        let g = Generator::new(&a.secret, a.params);
        let now = a.params.step_at(login::NOW);
        for step in [now - 1, now, now + 1] {
            expect(i, g.code_at_step(step).as_bytes(), true);
        }
        for step in [now - 2, now + 2] {
            expect(i, g.code_at_step(step).as_bytes(), false);
        }
        let spaced = format!(" {} ", &*g.code_at_step(now));
        expect(i, spaced.as_bytes(), true);
    }
    for c in RECOVERY_CODES {
        expect(0, c.as_bytes(), true);
        expect(0, c.to_uppercase().replace('-', "").as_bytes(), true);
        expect(1, c.as_bytes(), false);
    }
    for bad in [&b""[..], b"000000", b"\xff\xfe", b"4fh7-k2m9-xq3q"] {
        expect(0, bad, false);
    }
    if failures > 0 {
        eprintln!("{failures} self-test cases failed");
        std::process::exit(1);
    }
    println!("all self-test cases passed");
}
