//! Module arguments (SPEC §3) → [`Options`]. Anything unknown or malformed is an error.
#![forbid(unsafe_code)]

use std::path::PathBuf;

pub const DEFAULT_DIR: &str = "/var/lib/pam-totp";
pub const DEFAULT_POLICY: &str = "/etc/pam-totp/policy.toml";
pub const DEFAULT_PROMPT: &str = "Verification code: ";
pub const MAX_WINDOW: u32 = 10;
/// Where the fleet client library is installed (SPEC §11), loaded only with `store=`.
pub const DEFAULT_STORE_LIB: &str = "/usr/lib/pam-totp/libpam_totp_store.so";

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    pub dir: PathBuf,
    pub policy: PathBuf,
    pub window: u32,
    pub prompt: String,
    pub debug: bool,
    /// `split` (SPEC §9): take "password + code" apart from the one answer of a service with a
    /// single password field; the code is judged by a later `pam_totp.so` line.
    pub split: bool,
    /// `store=` (SPEC §11): the fleet store's `store.toml`; without it, files (SPEC §2).
    pub store: Option<PathBuf>,
    /// `store_lib=`: the fleet client library (root's, not writable by others).
    pub store_lib: PathBuf,
    /// `fault=panic` (only with the `fault-injection` feature): panic inside the module.
    pub fault_panic: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            dir: PathBuf::from(DEFAULT_DIR),
            policy: PathBuf::from(DEFAULT_POLICY),
            window: 1,
            prompt: DEFAULT_PROMPT.to_string(),
            debug: false,
            split: false,
            store: None,
            store_lib: PathBuf::from(DEFAULT_STORE_LIB),
            fault_panic: false,
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OptionError {
    #[error("unknown module option {0:?}")]
    Unknown(String),
    #[error("module option {0:?} given twice")]
    Duplicate(String),
    #[error("module option {0}= needs an absolute path, not {1:?}")]
    NotAbsolute(&'static str, String),
    #[error("module option window= takes a whole number from 0 to 10, not {0:?}")]
    Window(String),
    #[error("module option prompt= must not be empty or hold control characters")]
    Prompt,
    #[error(
        "module option {0}= does nothing on a split line (it asks for no code and judges none); \
         put it on the pam_totp.so line after the password module"
    )]
    NotWithSplit(&'static str),
}

fn absolute(key: &'static str, value: &str) -> Result<PathBuf, OptionError> {
    if value.starts_with('/') && !value.split('/').any(|c| c == "..") {
        Ok(PathBuf::from(value))
    } else {
        Err(OptionError::NotAbsolute(key, value.to_string()))
    }
}

impl Options {
    pub fn parse<S: AsRef<str>>(args: &[S]) -> Result<Self, OptionError> {
        let mut o = Options::default();
        let mut seen: Vec<&str> = Vec::new();
        for arg in args {
            let arg = arg.as_ref();
            let (key, value) = match arg.split_once('=') {
                Some((k, v)) => (k, Some(v)),
                None => (arg, None),
            };
            let known = match (key, value) {
                ("dir", Some(v)) => {
                    o.dir = absolute("dir", v)?;
                    "dir"
                }
                ("policy", Some(v)) => {
                    o.policy = absolute("policy", v)?;
                    "policy"
                }
                ("window", Some(v)) => {
                    o.window = v
                        .parse::<u32>()
                        .ok()
                        .filter(|w| *w <= MAX_WINDOW && !v.starts_with('+'))
                        .ok_or_else(|| OptionError::Window(v.to_string()))?;
                    "window"
                }
                ("prompt", Some(v)) => {
                    if v.trim().is_empty() || v.chars().any(char::is_control) {
                        return Err(OptionError::Prompt);
                    }
                    o.prompt = v.to_string();
                    "prompt"
                }
                ("store", Some(v)) => {
                    o.store = Some(absolute("store", v)?);
                    "store"
                }
                ("store_lib", Some(v)) => {
                    o.store_lib = absolute("store_lib", v)?;
                    "store_lib"
                }
                ("debug", None) => {
                    o.debug = true;
                    "debug"
                }
                ("split", None) => {
                    o.split = true;
                    "split"
                }
                #[cfg(feature = "fault-injection")]
                ("fault", Some("panic")) => {
                    o.fault_panic = true;
                    "fault"
                }
                _ => return Err(OptionError::Unknown(arg.to_string())),
            };
            if seen.contains(&known) {
                return Err(OptionError::Duplicate(known.to_string()));
            }
            seen.push(known);
        }
        if o.split {
            if let Some(k) = ["window", "prompt"].into_iter().find(|k| seen.contains(k)) {
                return Err(OptionError::NotWithSplit(k));
            }
        }
        Ok(o)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_no_arguments_then_defaults() {
        assert_eq!(Options::parse::<&str>(&[]).unwrap(), Options::default());
    }

    #[test]
    fn given_every_option_then_all_are_taken() {
        let o = Options::parse(&[
            "dir=/srv/totp",
            "policy=/etc/x.toml",
            "window=3",
            "prompt=One-time code: ",
            "debug",
        ])
        .unwrap();
        assert_eq!(o.dir, PathBuf::from("/srv/totp"));
        assert_eq!(o.policy, PathBuf::from("/etc/x.toml"));
        assert_eq!(o.window, 3);
        assert_eq!(o.prompt, "One-time code: ");
        assert!(o.debug);
        let f = Options::parse(&["store=/etc/pam-totp/store.toml", "store_lib=/opt/l.so"]).unwrap();
        assert_eq!(f.store, Some(PathBuf::from("/etc/pam-totp/store.toml")));
        assert_eq!(f.store_lib, PathBuf::from("/opt/l.so"));
        let s = Options::parse(&["split", "dir=/srv/totp", "debug"]).unwrap();
        assert!(s.split && s.debug && !o.split);
    }

    #[test]
    fn given_unknown_or_malformed_option_then_error() {
        let cases: &[(&[&str], OptionError)] = &[
            (&["nullok"], OptionError::Unknown("nullok".into())),
            #[cfg(not(feature = "fault-injection"))]
            (&["fault=panic"], OptionError::Unknown("fault=panic".into())),
            (&["debug=1"], OptionError::Unknown("debug=1".into())),
            (&["dir"], OptionError::Unknown("dir".into())),
            (&["window=11"], OptionError::Window("11".into())),
            (&["window=-1"], OptionError::Window("-1".into())),
            (&["window=+1"], OptionError::Window("+1".into())),
            (&["window="], OptionError::Window("".into())),
            (
                &["dir=relative"],
                OptionError::NotAbsolute("dir", "relative".into()),
            ),
            (
                &["dir=/a/../b"],
                OptionError::NotAbsolute("dir", "/a/../b".into()),
            ),
            (&["prompt="], OptionError::Prompt),
            (
                &["store=store.toml"],
                OptionError::NotAbsolute("store", "store.toml".into()),
            ),
            (&["split=1"], OptionError::Unknown("split=1".into())),
            (&["split", "window=2"], OptionError::NotWithSplit("window")),
            (
                &["prompt=Code: ", "split"],
                OptionError::NotWithSplit("prompt"),
            ),
            (&["split", "split"], OptionError::Duplicate("split".into())),
            (
                &["window=1", "window=2"],
                OptionError::Duplicate("window".into()),
            ),
        ];
        for (args, want) in cases {
            assert_eq!(Options::parse(args).unwrap_err(), *want, "{args:?}");
        }
    }
}
