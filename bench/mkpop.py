#!/usr/bin/env python3
"""mkpop.py DIR COUNT [UID_BASE] — one enrolled population, the same secrets for every module.

Creates (as root; files root:root 0600, directories 0700):
  DIR/users.txt                "NAME HEXSECRET" per line (what bench/pambench.c reads)
  DIR/ours/users/NAME.toml     pam_totp records (SPEC §2.1)
  DIR/ours/users/NAME.state    pam_totp state: an earlier login 10 steps ago
  DIR/ours/users/NAME.lock     pam_totp's per-user lock file (made by that earlier login)
  DIR/ga/NAME                  google-authenticator secret files: TOTP_AUTH,
                               DISALLOW_REUSE (an earlier login 10 steps ago), WINDOW_SIZE 3
                               (root 0400: for `user=root`)
  DIR/ga/NAME/.google_authenticator
                               instead, with UID_BASE: the same file in a directory of its own,
                               both owned by the user's uid and gid UID_BASE + line number in
                               users.txt (1-based: what bench/run.sh writes into the sandbox's
                               private /etc/passwd), file 0400, directory 0700, DIR/ga 0711 —
                               as google-authenticator wants them without `user=` (it looks the
                               login user up, switches its file uid to the user's, checks that
                               the user owns the file and writes a temp file next to it)
  DIR/oath/users.oath          pam_oath users file, one line per user
                               (HOTP/T30, no PIN, an earlier OTP 10 steps ago)

Every user "has logged in before", so no module pays for creating its first state
during the benchmark. Secrets are 20 random bytes (160 bits), SHA1, 6 digits, 30 s.
"""
import base64
import hashlib
import os
import sys
import time


def write(path, text, mode=0o600):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(path, mode)


def mkdir(path, mode=0o700):
    os.mkdir(path, mode)
    os.chmod(path, mode)


def main():
    if len(sys.argv) not in (3, 4):
        sys.exit("usage: mkpop.py DIR COUNT [UID_BASE]")
    root, count = sys.argv[1], int(sys.argv[2])
    uid_base = int(sys.argv[3]) if len(sys.argv) == 4 else None
    now = int(time.time())
    earlier = now // 30 - 10
    mkdir(root, 0o755)
    for d in ("ours", "ours/users", "ga", "oath"):
        mkdir(os.path.join(root, d))
    if uid_base is not None:
        os.chmod(os.path.join(root, "ga"), 0o711)
    earlier_local = time.strftime("%Y-%m-%dT%H:%M:%SL", time.localtime(earlier * 30))
    with open(os.path.join(root, "users.txt"), "w") as users, open(
        os.path.join(root, "oath/users.oath.tmp"), "w"
    ) as oath:
        for i in range(count):
            name = f"u{i:06d}"
            key = os.urandom(20)
            b32 = base64.b32encode(key).decode().rstrip("=")
            users.write(f"{name} {key.hex()}\n")
            write(
                os.path.join(root, "ours/users", name + ".toml"),
                "version = 1\n"
                f'user = "{name}"\n'
                'state = "active"\n'
                f'secret = "{b32}"\n'
                'algorithm = "SHA1"\n'
                "digits = 6\n"
                "period = 30\n"
                'issuer = "bench"\n'
                "created = 2026-01-01T00:00:00Z\n"
                "recovery = []\n",
            )
            # The state journal as the module writes it (pam_totp/src/store/state.rs): a
            # header, then one checksummed line per update.
            body = f"s={earlier} f=0 l=0 t=- r=-"
            check = hashlib.sha256(body.encode()).digest()[:8].hex()
            write(
                os.path.join(root, "ours/users", name + ".state"),
                f"pam-totp state journal 1\n{body} c={check}\n",
            )
            write(os.path.join(root, "ours/users", name + ".lock"), "")
            ga = f'{b32}\n" TOTP_AUTH\n" DISALLOW_REUSE {earlier}\n" WINDOW_SIZE 3\n'
            if uid_base is None:
                write(os.path.join(root, "ga", name), ga, 0o400)
            else:
                uid = uid_base + i + 1
                d = os.path.join(root, "ga", name)
                mkdir(d)
                write(os.path.join(d, ".google_authenticator"), ga, 0o400)
                os.chown(os.path.join(d, ".google_authenticator"), uid, uid)
                os.chown(d, uid, uid)
            oath.write(f"HOTP/T30\t{name}\t-\t{key.hex()}\t0\t000000\t{earlier_local}\n")
    os.chmod(os.path.join(root, "oath/users.oath.tmp"), 0o600)
    os.rename(os.path.join(root, "oath/users.oath.tmp"), os.path.join(root, "oath/users.oath"))


if __name__ == "__main__":
    main()
