//! Links the unwinder statically (libgcc_eh.a) instead of libgcc_s.so.1.
//!
//! std asks the linker for `-lgcc_s` (the unwinder behind `catch_unwind`). As a shared library
//! that means every process that loads the module also loads and initialises libgcc_s.so.1 —
//! for a PAM module, on every login (~0.3 ms here). A linker script named libgcc_s.so, found
//! first in this build's search path, makes `-lgcc_s` link the static unwinder into the module
//! instead; its `_Unwind_*` symbols stay internal (the module exports only `pam_sm_*`).
//!
//! Only where it can work: a linux-gnu target whose C compiler has a `libgcc_eh.a` (GCC's;
//! a clang/compiler-rt toolchain may not). `PAM_TOTP_DYNAMIC_UNWIND=1` opts out.
use std::{env, fs, path::PathBuf, process::Command};

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=PAM_TOTP_DYNAMIC_UNWIND");
    println!("cargo:rerun-if-env-changed=CC");
    let target_os = env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let target_env = env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    if target_os != "linux"
        || target_env != "gnu"
        || env::var_os("PAM_TOTP_DYNAMIC_UNWIND").is_some_and(|v| v == "1")
        || !have_libgcc_eh()
    {
        return;
    }
    let dir = PathBuf::from(env::var("OUT_DIR").expect("OUT_DIR")).join("static-unwind");
    fs::create_dir_all(&dir).expect("create OUT_DIR/static-unwind");
    fs::write(dir.join("libgcc_s.so"), "INPUT(-l:libgcc_eh.a)\n").expect("write linker script");
    println!("cargo:rustc-link-search=native={}", dir.display());
}

/// `cc -print-file-name=libgcc_eh.a` prints a path when the compiler has it, else the bare name.
fn have_libgcc_eh() -> bool {
    let cc = env::var("CC").unwrap_or_else(|_| "cc".into());
    Command::new(cc)
        .arg("-print-file-name=libgcc_eh.a")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .is_some_and(|p| p.trim() != "libgcc_eh.a" && PathBuf::from(p.trim()).is_file())
}
