//! Throwaway roots and directories for the tests.

use std::fs;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

pub(super) static N: AtomicUsize = AtomicUsize::new(0);

/// A throwaway root with etc/pam.d files.
pub(super) fn root_with(files: &[(&str, &str)]) -> PathBuf {
    let root = std::env::temp_dir().join(format!(
        "pam-totp-doctor-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    ));
    let _ = fs::remove_dir_all(&root);
    fs::create_dir_all(root.join("etc/pam.d")).unwrap();
    for (name, text) in files {
        let p = root.join("etc/pam.d").join(name);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, text).unwrap();
    }
    root
}
