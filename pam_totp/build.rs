//! Links the unwinder statically (libgcc_eh.a) instead of libgcc_s.so.1.
//!
//! std asks the linker for `-lgcc_s` (the unwinder behind `catch_unwind`). As a shared library
//! that means every process that loads the module also loads and initialises libgcc_s.so.1 —
//! for a PAM module, on every login. A linker script named libgcc_s.so, found first in this
//! build's search path, makes `-lgcc_s` link the static unwinder into the module instead.
use std::{env, fs, path::PathBuf};

fn main() {
    let target_os = env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let target_env = env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    if target_os != "linux" || target_env != "gnu" {
        return;
    }
    let dir = PathBuf::from(env::var("OUT_DIR").expect("OUT_DIR")).join("static-unwind");
    fs::create_dir_all(&dir).expect("create OUT_DIR/static-unwind");
    fs::write(dir.join("libgcc_s.so"), "INPUT(-l:libgcc_eh.a)\n").expect("write linker script");
    println!("cargo:rustc-link-search=native={}", dir.display());
    println!("cargo:rerun-if-changed=build.rs");
}
