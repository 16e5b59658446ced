//! Prints TOTP cases computed by `pam_totp::totp::Generator`, one per line:
//! `secret-hex algorithm digits period unix-time code`.
//!
//! `cargo run --release -p pam_totp --example totp_vectors -- N`: the RFC 6238 Appendix B
//! vectors (8 and 6 digits), then N random cases (SHA1/256/512, 6/8 digits, periods 15–300,
//! keys of 10–128 bytes, times up to 2^40). tests/fleet/sql-test.sh compares the in-database
//! TOTP (`pam_totp.code_at`) with these lines.
use pam_totp::hex;
use pam_totp::secret::{fill_random, Secret};
use pam_totp::totp::{Algorithm, Generator, Params};
use std::io::Write;

fn random_u64() -> u64 {
    let mut b = [0u8; 8];
    fill_random(&mut b).expect("OS random numbers");
    u64::from_le_bytes(b)
}

fn line(out: &mut impl Write, key: &[u8], alg: Algorithm, digits: i64, period: i64, time: u64) {
    let params = Params::new(alg, digits, period).expect("valid parameters");
    let secret = Secret::from_bytes(key.to_vec()).expect("valid key length");
    let code = Generator::new(&secret, params).code_at_step(params.step_at(time));
    writeln!(
        out,
        "{} {alg} {digits} {period} {time} {}",
        hex::encode(key),
        &*code
    )
    .expect("stdout");
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .map_or(10_000, |a| a.parse().expect("a number of random cases"));
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let algs = [Algorithm::Sha1, Algorithm::Sha256, Algorithm::Sha512];
    for t in [
        59u64,
        1111111109,
        1111111111,
        1234567890,
        2000000000,
        20000000000,
    ] {
        for alg in algs {
            let seed = b"1234567890123456789012345678901234567890123456789012345678901234";
            let key = &seed[..alg.default_key_bytes()];
            for digits in [8, 6] {
                line(&mut out, key, alg, digits, 30, t);
            }
        }
    }
    for _ in 0..n {
        let r = random_u64();
        let alg = algs[(r % 3) as usize];
        let digits = if (r >> 8) & 1 == 0 { 6 } else { 8 };
        let period = 15 + ((r >> 16) % 286) as i64;
        let mut key = vec![0u8; 10 + ((r >> 32) % 119) as usize];
        fill_random(&mut key).expect("OS random numbers");
        let time = random_u64() >> 24;
        line(&mut out, &key, alg, digits, period, time);
    }
    out.flush().expect("stdout");
}
