use super::*;
use crate::testutil::{record, save, u, uid, TempDir};
use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};

fn chmod(p: &Path, mode: u32) {
    fs::set_permissions(p, fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn given_saved_record_then_read_back_equal_with_mode_0600() {
    let t = TempDir::new();
    let s = t.store();
    let r = record("alice");
    save(&s, &r);
    assert_eq!(s.record(&u("alice")).unwrap(), Some(r));
    let meta = fs::metadata(t.users().join("alice.toml")).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
}

#[test]
fn given_no_files_then_no_record_and_default_state() {
    let t = TempDir::new();
    let s = t.store();
    assert_eq!(s.record(&u("bob")).unwrap(), None);
    assert_eq!(s.state(&u("bob")).unwrap(), State::default());
}

#[test]
fn given_state_written_then_read_back_and_no_temp_files_remain() {
    let t = TempDir::new();
    let s = t.store();
    let st = State {
        last_step: Some(42),
        failures: 2,
        ..State::default()
    };
    let lock = s.lock(&u("alice")).unwrap();
    lock.write_state(&st, Durability::Durable).unwrap();
    lock.write_state(&st, Durability::Relaxed).unwrap();
    drop(lock);
    assert_eq!(s.state(&u("alice")).unwrap(), st);
    let names = files::list_dir(&t.users()).unwrap();
    assert_eq!(names, vec!["alice.lock", "alice.state"]);
}

fn assert_untrusted(res: Result<impl std::fmt::Debug, StoreError>, needle: &str) {
    match res {
        Err(e @ StoreError::Untrusted { .. }) => {
            let msg = e.to_string();
            assert!(msg.starts_with("bad permissions on"), "{msg}");
            assert!(msg.contains(needle), "{needle}: {msg}");
        }
        other => panic!("expected Untrusted({needle}), got {other:?}"),
    }
}

#[test]
fn given_world_readable_record_then_refused() {
    let t = TempDir::new();
    let s = t.store();
    save(&s, &record("alice"));
    chmod(&t.users().join("alice.toml"), 0o644);
    assert_untrusted(s.record(&u("alice")), "mode 644");
}

#[test]
fn given_group_writable_state_then_refused() {
    let t = TempDir::new();
    let s = t.store();
    s.lock(&u("alice"))
        .unwrap()
        .write_state(&State::default(), Durability::Durable)
        .unwrap();
    chmod(&t.users().join("alice.state"), 0o620);
    assert_untrusted(s.state(&u("alice")), "mode 620");
}

#[test]
fn given_symlinked_record_then_refused() {
    let t = TempDir::new();
    let s = t.store();
    save(&s, &record("alice"));
    fs::rename(
        t.users().join("alice.toml"),
        t.path().join("elsewhere.toml"),
    )
    .unwrap();
    symlink(
        t.path().join("elsewhere.toml"),
        t.users().join("alice.toml"),
    )
    .unwrap();
    assert_untrusted(s.record(&u("alice")), "symbolic link");
}

#[test]
fn given_foreign_owned_record_then_refused() {
    if uid() != 0 {
        eprintln!("skipped: needs root to chown");
        return;
    }
    let t = TempDir::new();
    let s = t.store();
    save(&s, &record("alice"));
    std::os::unix::fs::chown(t.users().join("alice.toml"), Some(65534), None).unwrap();
    assert_untrusted(s.record(&u("alice")), "owned by uid 65534");
}

#[test]
fn given_directory_instead_of_record_then_refused() {
    let t = TempDir::new();
    let s = t.store();
    fs::create_dir(t.users().join("alice.toml")).unwrap();
    assert_untrusted(s.record(&u("alice")), "not a regular file");
}

#[test]
fn given_fifo_instead_of_state_then_refused_without_blocking() {
    let t = TempDir::new();
    let s = t.store();
    nix::unistd::mkfifo(
        &t.users().join("alice.state"),
        nix::sys::stat::Mode::S_IRWXU,
    )
    .unwrap();
    assert_untrusted(s.state(&u("alice")), "not a regular file");
}

#[test]
fn given_loose_state_dir_then_store_refused() {
    let t = TempDir::new();
    chmod(&t.state(), 0o755);
    assert_untrusted(Store::open(&t.state(), uid()), "mode 755");
    chmod(&t.state(), 0o700);
    chmod(&t.users(), 0o770);
    assert_untrusted(Store::open(&t.state(), uid()), "mode 770");
}

#[test]
fn given_world_writable_ancestor_then_store_refused() {
    let t = TempDir::new();
    chmod(t.path(), 0o777);
    assert_untrusted(
        Store::open(&t.state(), uid()),
        "writable by group or others",
    );
}

#[test]
fn given_users_dir_is_a_symlink_then_refused() {
    let t = TempDir::new();
    fs::rename(t.users(), t.path().join("real-users")).unwrap();
    symlink(t.path().join("real-users"), t.users()).unwrap();
    assert_untrusted(Store::open(&t.state(), uid()), "symbolic link");
}

#[test]
fn given_record_naming_another_user_then_refused() {
    let t = TempDir::new();
    let s = t.store();
    save(&s, &record("alice"));
    fs::rename(t.users().join("alice.toml"), t.users().join("bob.toml")).unwrap();
    let e = s.record(&u("bob")).unwrap_err().to_string();
    assert!(e.contains("expected \"bob\""), "{e}");
}

#[test]
fn given_oversized_record_then_refused() {
    let t = TempDir::new();
    let s = t.store();
    let p = t.users().join("alice.toml");
    fs::write(&p, vec![b'#'; 70_000]).unwrap();
    chmod(&p, 0o600);
    assert_untrusted(s.record(&u("alice")), "too large");
}

#[test]
fn given_invalid_user_name_then_no_user_name_and_so_no_path_is_built() {
    for bad in ["../etc/passwd", "", ".x", "a/b"] {
        assert!(crate::names::UserName::new(bad).is_err(), "{bad}");
    }
}

#[test]
fn given_corrupt_state_then_parse_error_names_the_file() {
    let t = TempDir::new();
    let s = t.store();
    let p = t.users().join("alice.state");
    fs::write(&p, "version = 1\nlast_step = ").unwrap();
    chmod(&p, 0o600);
    let e = s.state(&u("alice")).unwrap_err().to_string();
    assert!(e.contains("alice.state"), "{e}");
}

#[test]
fn remove_deletes_record_and_state_and_reports_whether_there_was_one() {
    let t = TempDir::new();
    let s = t.store();
    save(&s, &record("alice"));
    let lock = s.lock(&u("alice")).unwrap();
    lock.write_state(&State::default(), Durability::Durable)
        .unwrap();
    assert!(lock.remove().unwrap());
    assert!(!lock.remove().unwrap());
    drop(lock);
    assert_eq!(s.record(&u("alice")).unwrap(), None);
    assert!(s.users().unwrap().is_empty());
}

#[test]
fn users_lists_valid_record_names_only() {
    let t = TempDir::new();
    let s = t.store();
    save(&s, &record("bob"));
    save(&s, &record("alice"));
    fs::write(t.users().join("junk.txt"), "").unwrap();
    assert_eq!(s.users().unwrap(), vec![u("alice"), u("bob")]);
}

#[test]
fn given_missing_policy_then_none_and_trusted_policy_then_parsed() {
    let t = TempDir::new();
    let p = t.path().join("policy.toml");
    assert_eq!(load_policy(&p, uid()).unwrap(), None);
    fs::write(&p, "version = 1\nrequire_all = true\n").unwrap();
    chmod(&p, 0o644);
    assert!(load_policy(&p, uid()).unwrap().unwrap().require_all);
}

#[test]
fn given_group_writable_or_corrupt_policy_then_error() {
    let t = TempDir::new();
    let p = t.path().join("policy.toml");
    fs::write(&p, "version = 1\n").unwrap();
    chmod(&p, 0o664);
    assert_untrusted(load_policy(&p, uid()), "mode 664");
    chmod(&p, 0o644);
    fs::write(&p, "version = 1\nrequire_everybody = true\n").unwrap();
    let e = load_policy(&p, uid()).unwrap_err().to_string();
    assert!(
        e.contains("require_everybody") && e.contains("policy.toml"),
        "{e}"
    );
}

#[test]
fn concurrent_lockers_are_serialised() {
    use std::sync::{Arc, Mutex};
    let t = TempDir::new();
    let s = Arc::new(t.store());
    let inside = Arc::new(Mutex::new((0u32, 0u32)));
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let (s, inside) = (Arc::clone(&s), Arc::clone(&inside));
            std::thread::spawn(move || {
                let _l = s.lock(&u("alice")).unwrap();
                {
                    let mut g = inside.lock().unwrap();
                    g.0 += 1;
                    g.1 = g.1.max(g.0);
                }
                std::thread::sleep(std::time::Duration::from_millis(5));
                inside.lock().unwrap().0 -= 1;
            })
        })
        .collect();
    for th in threads {
        th.join().unwrap();
    }
    assert_eq!(
        inside.lock().unwrap().1,
        1,
        "two holders of one user's lock at once"
    );
}

#[test]
fn given_a_lock_held_too_long_then_the_next_locker_gives_up() {
    let t = TempDir::new();
    let s = t.store();
    let _held = s.lock(&u("alice")).unwrap();
    let started = std::time::Instant::now();
    let e = s
        .lock_named("alice", std::time::Duration::from_millis(100))
        .err()
        .expect("times out");
    assert!(matches!(e, StoreError::LockTimeout { .. }), "{e}");
    assert!(started.elapsed() >= std::time::Duration::from_millis(100));
    // Another user's lock is independent.
    assert!(s.lock(&u("bob")).is_ok());
}

fn state_bytes(t: &TempDir, user: &str) -> Vec<u8> {
    fs::read(t.users().join(format!("{user}.state"))).unwrap()
}

fn ino(t: &TempDir, user: &str) -> u64 {
    use std::os::unix::fs::MetadataExt;
    fs::metadata(t.users().join(format!("{user}.state")))
        .unwrap()
        .ino()
}

fn step(n: u64) -> State {
    State {
        last_step: Some(n),
        ..State::default()
    }
}

#[test]
fn given_journal_then_updates_are_appended_in_place() {
    let t = TempDir::new();
    let s = t.store();
    let lock = s.lock(&u("alice")).unwrap();
    lock.write_state(&step(1), Durability::Durable).unwrap();
    let first = ino(&t, "alice");
    lock.write_state(&step(2), Durability::Durable).unwrap();
    lock.write_state(&step(3), Durability::Relaxed).unwrap();
    assert_eq!(ino(&t, "alice"), first, "appended, not replaced");
    let text = String::from_utf8(state_bytes(&t, "alice")).unwrap();
    assert!(text.starts_with(state::JOURNAL_HEADER), "{text}");
    assert_eq!(text.lines().count(), 4, "{text}");
    assert_eq!(s.state(&u("alice")).unwrap(), step(3));
}

#[test]
fn given_long_journal_then_compacted_to_one_entry() {
    let t = TempDir::new();
    let s = t.store();
    let lock = s.lock(&u("alice")).unwrap();
    for n in 1..=200 {
        lock.write_state(&step(n), Durability::Relaxed).unwrap();
        let len = state_bytes(&t, "alice").len() as u64;
        assert!(len <= JOURNAL_LIMIT, "{len} bytes after {n} updates");
    }
    assert_eq!(s.state(&u("alice")).unwrap(), step(200));
    assert_eq!(
        files::list_dir(&t.users()).unwrap(),
        ["alice.lock", "alice.state"]
    );
}

#[test]
fn given_torn_append_then_next_write_rewrites_the_journal() {
    let t = TempDir::new();
    let s = t.store();
    let lock = s.lock(&u("alice")).unwrap();
    lock.write_state(&step(1), Durability::Durable).unwrap();
    // A crash in the middle of an append: half a line, no newline.
    let mut torn = state_bytes(&t, "alice");
    torn.extend_from_slice(&step(2).to_entry().as_bytes()[..10]);
    fs::write(t.users().join("alice.state"), &torn).unwrap();
    assert_eq!(s.state(&u("alice")).unwrap(), step(1), "torn line ignored");
    let before = ino(&t, "alice");
    lock.write_state(&step(3), Durability::Relaxed).unwrap();
    assert_ne!(
        ino(&t, "alice"),
        before,
        "rewritten, never appended after a torn line"
    );
    let text = String::from_utf8(state_bytes(&t, "alice")).unwrap();
    assert_eq!(
        text,
        format!("{}{}", state::JOURNAL_HEADER, step(3).to_entry())
    );
}

#[test]
fn given_toml_state_then_read_and_converted_by_the_next_write() {
    let t = TempDir::new();
    let s = t.store();
    let old = State {
        failures: 2,
        ..step(7)
    };
    fs::write(t.users().join("alice.state"), old.to_toml()).unwrap();
    chmod(&t.users().join("alice.state"), 0o600);
    assert_eq!(s.state(&u("alice")).unwrap(), old);
    s.lock(&u("alice"))
        .unwrap()
        .write_state(&step(8), Durability::Relaxed)
        .unwrap();
    assert!(state_bytes(&t, "alice").starts_with(state::JOURNAL_HEADER.as_bytes()));
    assert_eq!(s.state(&u("alice")).unwrap(), step(8));
}

#[test]
fn given_unchanged_record_then_read_again_reuses_it_and_changed_record_is_parsed() {
    let t = TempDir::new();
    let s = t.store();
    let mut r = record("alice");
    save(&s, &r);
    let lock = s.lock(&u("alice")).unwrap();
    let first = s.record_read(&u("alice")).unwrap().unwrap();
    assert_eq!(lock.record_again(first).unwrap(), Some((r.clone(), true)));
    let first = s.record_read(&u("alice")).unwrap().unwrap();
    r.issuer = "another issuer".into();
    lock.write_record(&r).unwrap();
    assert_eq!(lock.record_again(first).unwrap(), Some((r, false)));
    let first = s.record_read(&u("alice")).unwrap().unwrap();
    lock.remove().unwrap();
    assert_eq!(lock.record_again(first).unwrap(), None);
}

#[test]
fn given_state_read_before_the_lock_then_read_again_gives_what_the_file_now_holds() {
    let t = TempDir::new();
    let s = t.store();
    let lock = s.lock(&u("alice")).unwrap();
    // No file, before and after.
    let first = s.state_read(&u("alice")).unwrap();
    assert_eq!(lock.state_again(first).unwrap(), State::default());
    // Unchanged.
    lock.write_state(&step(1), Durability::Durable).unwrap();
    let first = s.state_read(&u("alice")).unwrap();
    assert_eq!(first.state(), &step(1));
    assert_eq!(lock.state_again(first).unwrap(), step(1));
    // A line appended meanwhile.
    let first = s.state_read(&u("alice")).unwrap();
    lock.write_state(&step(2), Durability::Relaxed).unwrap();
    assert_eq!(lock.state_again(first).unwrap(), step(2));
    // A torn append meanwhile: the last complete line.
    let first = s.state_read(&u("alice")).unwrap();
    let good = state_bytes(&t, "alice");
    let mut torn = good.clone();
    torn.extend_from_slice(&step(3).to_entry().as_bytes()[..10]);
    fs::write(t.users().join("alice.state"), &torn).unwrap();
    assert_eq!(lock.state_again(first).unwrap(), step(2));
    // A damaged last line meanwhile: refused, not the state read before.
    fs::write(t.users().join("alice.state"), &good).unwrap();
    let first = s.state_read(&u("alice")).unwrap();
    let mut damaged = good.clone();
    let at = damaged.len() - 20;
    damaged[at] ^= 1;
    fs::write(t.users().join("alice.state"), &damaged).unwrap();
    assert!(matches!(
        lock.state_again(first),
        Err(StoreError::Parse { .. })
    ));
    // Removed meanwhile: no login yet.
    fs::write(t.users().join("alice.state"), &good).unwrap();
    let first = s.state_read(&u("alice")).unwrap();
    fs::remove_file(t.users().join("alice.state")).unwrap();
    assert_eq!(lock.state_again(first).unwrap(), State::default());
}

#[test]
fn given_untrusted_files_then_the_error_names_the_file_kind_and_the_check() {
    let t = TempDir::new();
    let s = t.store();
    save(&s, &record("alice"));
    chmod(&t.users().join("alice.toml"), 0o640);
    match s.record(&u("alice")) {
        Err(StoreError::Untrusted { file, check, .. }) => {
            assert_eq!(file, FileKind::Record("alice".into()));
            assert_eq!(
                check,
                Check::Mode {
                    mode: 0o640,
                    exposure: Exposure::Private
                }
            );
        }
        other => panic!("{other:?}"),
    }
    fs::write(t.users().join("bob.state"), "garbage").unwrap();
    chmod(&t.users().join("bob.state"), 0o600);
    assert!(matches!(
        s.state(&u("bob")),
        Err(StoreError::Parse { file: FileKind::State(ref who), .. }) if who == "bob"
    ));
}
