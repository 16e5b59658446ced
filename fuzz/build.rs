//! Generates `cli_modules.rs`: one `#[path = ...] pub mod NAME;` per `mod NAME;` line of the
//! admin CLI's `enroll-cli/src/main.rs`, so that src/lib.rs compiles the CLI's modules (the
//! CLI is a binary-only crate, and its importers are what the import_* targets fuzz).
use std::path::Path;
use std::{env, fs};

fn main() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../enroll-cli/src");
    let main_rs = src.join("main.rs");
    println!("cargo:rerun-if-changed={}", main_rs.display());
    let text = fs::read_to_string(&main_rs).expect("read enroll-cli/src/main.rs");
    let mut out = String::new();
    for line in text.lines() {
        let Some(name) = line
            .trim()
            .strip_prefix("mod ")
            .and_then(|r| r.strip_suffix(';'))
        else {
            continue;
        };
        let file = src
            .join(format!("{name}.rs"))
            .canonicalize()
            .expect("CLI module file");
        println!("cargo:rerun-if-changed={}", file.display());
        out.push_str(&format!(
            "#[path = {:?}]\npub mod {name};\n",
            file.display().to_string()
        ));
    }
    let dest = Path::new(&env::var("OUT_DIR").expect("OUT_DIR")).join("cli_modules.rs");
    fs::write(dest, out).expect("write cli_modules.rs");
}
