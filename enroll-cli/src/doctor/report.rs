//! The report: findings with their level and fix, grouped in sections, rendered as text.

use std::path::Path;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Level {
    Ok,
    Note,
    Warn,
    Error,
}

impl Level {
    fn label(self) -> &'static str {
        match self {
            Level::Ok => "ok",
            Level::Note => "note",
            Level::Warn => "warn",
            Level::Error => "ERROR",
        }
    }
}

#[derive(Clone, Debug)]
pub(super) struct Finding {
    pub(super) level: Level,
    pub(super) text: String,
    pub(super) fix: Option<String>,
}

#[derive(Debug, Default)]
pub(super) struct Section {
    pub(super) title: String,
    pub(super) findings: Vec<Finding>,
}

impl Section {
    pub(super) fn new(title: impl Into<String>) -> Self {
        Section {
            title: title.into(),
            findings: Vec::new(),
        }
    }
    fn push(&mut self, level: Level, text: impl Into<String>, fix: Option<String>) {
        self.findings.push(Finding {
            level,
            text: text.into(),
            fix,
        });
    }
    pub(super) fn ok(&mut self, text: impl Into<String>) {
        self.push(Level::Ok, text, None);
    }
    pub(super) fn note(&mut self, text: impl Into<String>) {
        self.push(Level::Note, text, None);
    }
    pub(super) fn warn(&mut self, text: impl Into<String>, fix: impl Into<String>) {
        self.push(Level::Warn, text, Some(fix.into()));
    }
    pub(super) fn error(&mut self, text: impl Into<String>, fix: impl Into<String>) {
        self.push(Level::Error, text, Some(fix.into()));
    }
}

#[derive(Debug, Default)]
pub(super) struct Report {
    pub(super) sections: Vec<Section>,
}

impl Report {
    fn count(&self, level: Level) -> usize {
        self.sections
            .iter()
            .flat_map(|s| &s.findings)
            .filter(|f| f.level == level)
            .count()
    }
    pub(super) fn errors(&self) -> usize {
        self.count(Level::Error)
    }

    pub(super) fn render(&self, dir: &Path, policy: &Path, root: &Path) -> String {
        let mut out = format!(
            "pam-totp doctor: state {}, policy {}, configuration under {}\n",
            dir.display(),
            policy.display(),
            root.display()
        );
        for s in &self.sections {
            out.push_str(&format!("\n{}\n", s.title));
            for f in &s.findings {
                out.push_str(&format!("  {:<6} {}\n", f.level.label(), f.text));
                if let Some(fix) = &f.fix {
                    out.push_str(&format!("         fix: {fix}\n"));
                }
            }
        }
        let (e, w) = (self.errors(), self.count(Level::Warn));
        let plural = |n: usize, what: &str| format!("{n} {what}{}", if n == 1 { "" } else { "s" });
        out.push('\n');
        if e == 0 {
            out.push_str(&format!(
                "Nothing wrong found ({}).\n",
                plural(w, "warning")
            ));
        } else {
            out.push_str(&format!(
                "Found {} and {}: fix the ERROR lines above, then run `pam-totp doctor` again.\n",
                plural(e, "problem"),
                plural(w, "warning")
            ));
        }
        out
    }
}

pub(super) fn plural_s(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}
