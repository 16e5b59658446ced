//! Clock synchronisation (timedatectl, chronyc, ntpq; not knowing is a warning).

use super::report::Section;
use super::run_cmd;
use std::time::Duration;

pub(super) fn check_clock(commands: bool) -> Section {
    let mut s = Section::new("Clock");
    if !commands {
        s.note("not checked (configuration read from another root)");
        return s;
    }
    let limit = Duration::from_secs(5);
    let unsynced_fix = "codes are accepted only within ±30 s (one step each way): enable time \
                        synchronisation (timedatectl set-ntp true, or install chrony)";
    if let Some(out) = run_cmd(
        "timedatectl",
        &["show", "--property=NTPSynchronized", "--value"],
        limit,
    ) {
        match out.trim() {
            "yes" => {
                s.ok("synchronised (timedatectl: NTPSynchronized=yes)");
                return s;
            }
            "no" => {
                s.warn(
                    "not synchronised (timedatectl: NTPSynchronized=no)",
                    unsynced_fix,
                );
                return s;
            }
            _ => {}
        }
    }
    if let Some(out) = run_cmd("chronyc", &["-n", "tracking"], limit) {
        let leap = out
            .lines()
            .find(|l| l.starts_with("Leap status"))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_string());
        match leap.as_deref() {
            Some("Not synchronised") => s.warn("not synchronised (chronyc tracking)", unsynced_fix),
            Some(status) => s.ok(format!("synchronised (chronyc tracking: {status})")),
            None => s.warn("chronyc tracking gave no leap status", unsynced_fix),
        }
        return s;
    }
    if let Some(out) = run_cmd("ntpq", &["-pn"], limit) {
        if out.lines().any(|l| l.starts_with('*')) {
            s.ok("synchronised (ntpq: a system peer is selected)");
        } else {
            s.warn("ntpq shows no selected peer", unsynced_fix);
        }
        return s;
    }
    s.warn(
        "cannot tell whether the clock is synchronised (timedatectl, chronyc and ntpq gave no \
         answer)",
        "make sure the clock is kept in sync (systemd-timesyncd, chrony or ntp): codes are \
         accepted only within ±30 s",
    );
    s
}
