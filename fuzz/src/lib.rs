//! Shared code of the fuzz targets.
//!
//! The admin CLI's modules, compiled at this crate's root. The CLI (`enroll-cli`) is a
//! binary-only crate, so its importers (`import_ga::parse`, `import_oath::parse_line`, ...)
//! cannot be linked from here; build.rs lists the modules of `enroll-cli/src/main.rs` and they
//! are compiled at this crate's root, where their `crate::...` paths resolve as in the CLI.
//! A `[lib]` target in enroll-cli would make this unnecessary.
#![allow(dead_code, unused_imports, clippy::all)]

include!(concat!(env!("OUT_DIR"), "/cli_modules.rs"));

pub mod login;
