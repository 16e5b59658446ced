//! The formats of other TOTP modules' files, parsed without touching the file system: what the
//! admin CLI's `pam-totp import` verbs read (they open the source, check it and store the
//! records) and what the fuzz targets `import_ga` and `import_oath` exercise.
#![forbid(unsafe_code)]

pub mod google_authenticator;
pub mod oath;
