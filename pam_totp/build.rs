//! Link settings for the module (the cdylib), chosen for its load cost: libpam dlopens it with
//! RTLD_NOW on every `pam_start` and dlcloses it at `pam_end`, so the dynamic loader's work is
//! paid on every login (BENCHMARKS.md, "Loading the module").
//!
//! 1. Static unwinder (libgcc_eh.a) instead of libgcc_s.so.1, below.
//! 2. Packed relative relocations (`-z pack-relative-relocs`, DT_RELR): the ~1,800 relative
//!    relocations (vtables, string and panic-location pointers) become a 500-byte bitmap that
//!    ld.so applies in a tight loop instead of 44 KB of RELA entries. Needs glibc >= 2.36 at run
//!    time (the linker records the GLIBC_ABI_DT_RELR version, so an older glibc refuses to load
//!    the module with a clear error instead of misbehaving). `PAM_TOTP_NO_RELR=1` opts out.
//!
//! Not changed, on purpose: full RELRO and BIND_NOW (rustc's default; Debian builds its own PAM
//! modules, pam_unix included, the same way). Lazy binding (`-z lazy`) would save nothing: libpam
//! dlopens modules with RTLD_NOW, which binds every symbol at load whatever the module asks, and
//! rustc's code calls imports through the GOT (only 10 of the 84 symbol relocations are PLT
//! slots, from libgcc_eh's C code). It would only give up the read-only GOT, in a module loaded
//! into setuid programs (su, sudo) and sshd.
//!
//! ## Static unwinder
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
    println!("cargo:rerun-if-env-changed=PAM_TOTP_NO_RELR");
    let target_os = env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let target_env = env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    if target_os != "linux" || target_env != "gnu" {
        return;
    }
    if !opted_out("PAM_TOTP_NO_RELR") {
        println!("cargo:rustc-cdylib-link-arg=-Wl,-z,pack-relative-relocs");
    }
    if opted_out("PAM_TOTP_DYNAMIC_UNWIND") || !have_libgcc_eh() {
        return;
    }
    let dir = PathBuf::from(env::var("OUT_DIR").expect("OUT_DIR")).join("static-unwind");
    fs::create_dir_all(&dir).expect("create OUT_DIR/static-unwind");
    fs::write(dir.join("libgcc_s.so"), "INPUT(-l:libgcc_eh.a)\n").expect("write linker script");
    println!("cargo:rustc-link-search=native={}", dir.display());
}

/// `VAR=1` in the build environment.
fn opted_out(var: &str) -> bool {
    env::var_os(var).is_some_and(|v| v == "1")
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
