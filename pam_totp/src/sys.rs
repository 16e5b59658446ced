//! The outside world the decision needs besides files: the clock and the group database.
#![forbid(unsafe_code)]

use std::time::{SystemTime, UNIX_EPOCH};

pub trait System {
    /// Unix seconds now.
    fn now(&self) -> u64;
    /// Names of the user's groups (primary and supplementary); `Ok(None)` if NSS does not
    /// know the user.
    fn groups_of(&self, user: &str) -> Result<Option<Vec<String>>, String>;
    /// The name NSS gives the user (`pw_name`), `Ok(None)` if unknown. Differs from the name
    /// asked for when the user database matches names loosely (case-insensitive LDAP/AD).
    fn canonical_name(&self, user: &str) -> Result<Option<String>, String>;
    /// The host name: the default issuer of new enrolments.
    fn hostname(&self) -> String;
}

/// The real clock and NSS; created only at entry points.
pub struct RealSystem;

impl System for RealSystem {
    fn now(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    }

    fn groups_of(&self, user: &str) -> Result<Option<Vec<String>>, String> {
        use nix::unistd::{getgrouplist, Group, User};
        let Some(u) = User::from_name(user).map_err(|e| format!("user lookup: {e}"))? else {
            return Ok(None);
        };
        let cname = std::ffi::CString::new(user).map_err(|_| "NUL in user name".to_string())?;
        let gids = getgrouplist(&cname, u.gid).map_err(|e| format!("group lookup: {e}"))?;
        let mut names = Vec::with_capacity(gids.len());
        for gid in gids {
            if let Some(g) = Group::from_gid(gid).map_err(|e| format!("group lookup: {e}"))? {
                names.push(g.name);
            }
        }
        Ok(Some(names))
    }

    fn canonical_name(&self, user: &str) -> Result<Option<String>, String> {
        nix::unistd::User::from_name(user)
            .map(|u| u.map(|u| u.name))
            .map_err(|e| format!("user lookup: {e}"))
    }

    fn hostname(&self) -> String {
        nix::unistd::gethostname()
            .ok()
            .and_then(|h| h.into_string().ok())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "localhost".to_string())
    }
}
