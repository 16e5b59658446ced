//! Shared code of the fuzz targets: the scripted login of `login_answer` and its self-test.

pub mod login;
