//! Link settings for `libpam_totp_store.so` (the cdylib that `pam_totp.so` loads when
//! `store=` is set); the rlib the CLI uses is not affected.
//!
//! 1. `--exclude-libs,ALL`: symbols from archives (every dependency's rlib, the static
//!    unwinder) stay internal. Without it the library would also export the `#[no_mangle]`
//!    PAM entry points of the `pam_totp` rlib (`pam_sm_authenticate`, `pam_sm_setcred`),
//!    keep their code and need libpam; with it, it exports only `pam_totp_store_v1` and needs
//!    only libc.
//! 2. Packed relative relocations, as `pam_totp.so` is linked (see pam_totp/build.rs; the
//!    fleet/README.md measurements of the client were made so). `PAM_TOTP_NO_RELR=1` opts out.
//!
//! The static unwinder of pam_totp/build.rs reaches this library through the link search path
//! that build script exports.
use std::env;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=PAM_TOTP_NO_RELR");
    let target_os = env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let target_env = env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    if target_os != "linux" || target_env != "gnu" {
        return;
    }
    println!("cargo:rustc-cdylib-link-arg=-Wl,--exclude-libs,ALL");
    if env::var_os("PAM_TOTP_NO_RELR").is_none_or(|v| v != "1") {
        println!("cargo:rustc-cdylib-link-arg=-Wl,-z,pack-relative-relocs");
    }
}
