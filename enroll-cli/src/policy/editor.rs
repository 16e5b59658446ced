//! Edits of `policy.toml` through toml_edit (comments and layout kept), validated and written
//! atomically.

use super::{show, HEADER};
use crate::error::{plain_io, CliError, Result};
use crate::output::{erroutln, out, outln};
use pam_totp::escape::terminal_safe;
use pam_totp::policy::Policy;
use pam_totp::store::{self, PolicyReplaceError, StoreError};
use pam_totp::sys::{RealSystem, System};
use std::path::{Path, PathBuf};
use toml_edit::{Array, DocumentMut, Item, Table, TableLike, Value};

pub struct Editor {
    path: PathBuf,
    pub doc: DocumentMut,
    pub changes: Vec<String>,
    pub warnings: Vec<String>,
}

impl Editor {
    pub fn new(path: &Path, text: Option<&str>) -> Result<Editor> {
        let doc = text.unwrap_or(HEADER).parse::<DocumentMut>().map_err(|e| {
            CliError::new(format!(
                "cannot edit {}: it is not valid TOML: {}",
                path.display(),
                e.message().trim().replace('\n', "; ")
            ))
            .hint("fix it by hand first (or move it away to start afresh)")
        })?;
        Ok(Editor {
            path: path.to_path_buf(),
            doc,
            changes: Vec::new(),
            warnings: Vec::new(),
        })
    }

    /// The table holding `key_path`'s last element, created (as `[throttle]`) if missing.
    fn table_for(&mut self, key_path: &[&str]) -> Result<&mut dyn TableLike> {
        match key_path {
            [_] => Ok(self.doc.as_table_mut()),
            [t, _] => {
                let item = self
                    .doc
                    .as_table_mut()
                    .entry(t)
                    .or_insert(Item::Table(Table::new()));
                item.as_table_like_mut()
                    .ok_or_else(|| CliError::new(format!("`{t}` in the policy is not a table")))
            }
            _ => Err(CliError::new("bad key")),
        }
    }

    /// Sets a value, keeping the key's position and the value's comments (decor).
    pub fn set(&mut self, key_path: &[&str], mut v: Value) -> Result<()> {
        let name = key_path.join(".");
        let table = self.table_for(key_path)?;
        let key = key_path[key_path.len() - 1];
        let new = bare(&v);
        match table.get_mut(key) {
            Some(item) => {
                let old = item.as_value().map(bare);
                if let Some(o) = item.as_value() {
                    *v.decor_mut() = o.decor().clone();
                }
                *item = Item::Value(v);
                if old.as_deref() != Some(new.as_str()) {
                    self.changes.push(format!("{name} = {new}"));
                }
            }
            None => {
                table.insert(key, Item::Value(v));
                self.changes.push(format!("{name} = {new}"));
            }
        }
        Ok(())
    }

    pub fn unset(&mut self, key_path: &[&str]) -> Result<()> {
        let name = key_path.join(".");
        let removed = match key_path {
            [k] => self.doc.as_table_mut().remove(k).is_some(),
            [t, k] => {
                let removed = self
                    .doc
                    .get_mut(t)
                    .and_then(Item::as_table_like_mut)
                    .is_some_and(|tbl| tbl.remove(k).is_some());
                // Drop a [throttle] table left empty.
                if self
                    .doc
                    .get(t)
                    .and_then(Item::as_table_like)
                    .is_some_and(|tbl| tbl.is_empty())
                {
                    self.doc.as_table_mut().remove(t);
                }
                removed
            }
            _ => false,
        };
        if removed {
            self.changes.push(format!("{name} removed"));
        }
        Ok(())
    }

    fn array<'a>(doc: &'a mut DocumentMut, key: &str) -> Result<&'a mut Array> {
        let item = doc
            .as_table_mut()
            .entry(key)
            .or_insert(toml_edit::value(Array::new()));
        item.as_array_mut().ok_or_else(|| {
            CliError::new(format!("`{key}` in the policy is not an array"))
                .hint(format!("fix it with: pam-totp policy set {key} '[]'"))
        })
    }

    /// Adds `name` to the array `key` (keeping its layout); false if it was there.
    pub fn add(&mut self, key: &str, name: &str) -> Result<bool> {
        let arr = Self::array(&mut self.doc, key)?;
        if arr.iter().any(|v| v.as_str() == Some(name)) {
            return Ok(false);
        }
        // Multi-line arrays stay multi-line: the new entry is formatted like the last one.
        let multi_line = arr
            .iter()
            .last()
            .filter(|last| {
                last.decor()
                    .prefix()
                    .and_then(|p| p.as_str())
                    .is_some_and(|p| p.contains('\n'))
            })
            .map(|last| last.decor().clone());
        match multi_line {
            Some(decor) => {
                let mut v = Value::from(name);
                *v.decor_mut() = decor;
                arr.push_formatted(v);
            }
            None => arr.push(name),
        }
        self.changes.push(format!("{key}: added {name}"));
        Ok(true)
    }

    /// Removes `name` from the array `key`; false if it was not there.
    pub fn remove(&mut self, key: &str, name: &str) -> Result<bool> {
        if self.doc.get(key).is_none() {
            return Ok(false);
        }
        let arr = Self::array(&mut self.doc, key)?;
        let Some(i) = arr.iter().position(|v| v.as_str() == Some(name)) else {
            return Ok(false);
        };
        arr.remove(i);
        self.changes.push(format!("{key}: removed {name}"));
        Ok(true)
    }

    /// Validates the edited text with the module's parser, then replaces the file atomically.
    /// `json`: print the policy after the edit as `policy show --json` does, instead of the
    /// changes and the policy in words.
    pub fn commit(self, original: Option<&str>, json: bool) -> Result<()> {
        let path = self.path.display().to_string();
        for w in &self.warnings {
            erroutln!("warning: {w}");
        }
        if self.changes.is_empty() {
            if json {
                let now = Policy::parse(original.unwrap_or(HEADER))
                    .map_err(|e| CliError::new(format!("cannot use the policy {path}: {e}")))?;
                return show::print(&self.path, original.is_some(), &now);
            }
            outln!("Nothing to change in {path}.")?;
            return Ok(());
        }
        let text = self.doc.to_string();
        let policy = store::replace_policy(&self.path, &text).map_err(|e| match e {
            PolicyReplaceError::Invalid(e) => {
                let err = CliError::new(format!(
                    "refused: the edit would make the policy invalid: {e}; {path} was not changed"
                ));
                match original.map(Policy::parse) {
                    Some(Err(old)) => err.hint(format!(
                        "the policy was already invalid before this edit ({old}); fix that \
                         first, e.g. with `pam-totp policy unset KEY` or by hand"
                    )),
                    _ => err,
                }
            }
            PolicyReplaceError::Store(StoreError::Io { path, source, .. }) => {
                CliError::new(format!(
                    "cannot write {}: {}; the policy was not changed",
                    path.display(),
                    plain_io(&source)
                ))
            }
            PolicyReplaceError::Store(other) => CliError::store("cannot write the policy", other),
        })?;
        if json {
            return show::print(&self.path, true, &policy);
        }
        let verb = if original.is_some() {
            "Updated"
        } else {
            "Created"
        };
        outln!("{verb} {path}:")?;
        for c in &self.changes {
            outln!("  {}", terminal_safe(c))?;
        }
        outln!("Policy now:")?;
        out!("{}", show::summary(&policy, RealSystem.now()))?;
        Ok(())
    }
}

/// A value as TOML text, without surrounding whitespace or comments.
pub fn bare(v: &Value) -> String {
    let mut v = v.clone();
    v.decor_mut().clear();
    v.to_string().trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC: &str = r#"version = 1
require_all = false          # every user must use a second factor
require_users = []           # or just these users
require_groups = []          # or members of these groups
exempt_users = []            # never required (an enrolled exempt user is still asked)
exempt_groups = []
grace_until = 2026-12-31T00:00:00Z   # optional: until then, required-but-unenrolled users get in with a notice
enroll_at_login = false      # required-but-unenrolled users enrol at their next login
issuer = "build-01"          # default issuer for new enrolments (default: the host name)

[throttle]
attempts = 5
lock_seconds = 60
max_lock_seconds = 3600
"#;

    fn ed(text: &str) -> Editor {
        Editor::new(Path::new("/x/policy.toml"), Some(text)).unwrap()
    }

    #[test]
    fn set_keeps_the_comment_after_the_value() {
        let mut e = ed(SPEC);
        e.set(&["enroll_at_login"], Value::from(true)).unwrap();
        let out = e.doc.to_string();
        assert!(
            out.contains("enroll_at_login = true      # required-but-unenrolled users enrol at their next login"),
            "{out}"
        );
        assert_eq!(e.changes, vec!["enroll_at_login = true"]);
    }

    #[test]
    fn add_and_remove_keep_the_rest_of_the_file() {
        let mut e = ed(SPEC);
        assert!(e.add("require_groups", "wheel").unwrap());
        assert!(!e.add("require_groups", "wheel").unwrap());
        let out = e.doc.to_string();
        assert!(
            out.contains("require_groups = [\"wheel\"]          # or members of these groups"),
            "{out}"
        );
        assert!(e.remove("require_groups", "wheel").unwrap());
        assert!(!e.remove("require_groups", "wheel").unwrap());
        assert_eq!(e.doc.to_string(), SPEC);
    }

    #[test]
    fn multi_line_arrays_stay_multi_line() {
        let mut e = ed("version = 1\nrequire_users = [\n  \"alice\",\n]\n");
        e.add("require_users", "bob").unwrap();
        let out = e.doc.to_string();
        assert!(out.contains("\n  \"alice\",\n  \"bob\",\n]"), "{out:?}");
    }

    #[test]
    fn throttle_table_is_created_and_removed_when_empty() {
        let mut e = ed("version = 1\n");
        e.set(&["throttle", "attempts"], Value::from(3)).unwrap();
        assert_eq!(
            e.doc.to_string(),
            "version = 1\n\n[throttle]\nattempts = 3\n"
        );
        e.unset(&["throttle", "attempts"]).unwrap();
        assert_eq!(e.doc.to_string(), "version = 1\n");
    }

    #[test]
    fn new_top_level_keys_go_before_the_throttle_table() {
        let mut e = ed(SPEC);
        e.unset(&["issuer"]).unwrap();
        e.set(&["issuer"], Value::from("x")).unwrap();
        let out = e.doc.to_string();
        assert!(
            out.find("issuer = \"x\"").unwrap() < out.find("[throttle]").unwrap(),
            "{out}"
        );
        Policy::parse(&out).unwrap();
    }

    #[test]
    fn header_is_a_valid_policy() {
        assert_eq!(Policy::parse(HEADER).unwrap(), Policy::default());
    }
}
