#!/usr/bin/env python3
"""warm.py POPDIR MODULE FIRST COUNT — reads the files MODULE will use for users FIRST..
FIRST+COUNT-1 (wrapping), so that the next timed logins find them in the page cache, as on a
server whose RAM holds its users' small files. Every module gets the same treatment.
(This VM keeps little page cache: without warming, a user not seen for a few minutes costs
each module a few reads from the virtual disk, which measures the VM, not the module.)"""
import os
import sys

pop, module, first, count = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
users = [line.split()[0] for line in open(os.path.join(pop, "users.txt"))]
paths = []
for i in range(first, first + count):
    name = users[i % len(users)]
    if module == "ga":
        p = os.path.join(pop, "ga", name)
        if os.path.isdir(p):  # a population known to NSS (mkpop.py UID_BASE)
            p = os.path.join(p, ".google_authenticator")
        paths.append(p)
    elif module == "oath":
        paths = [os.path.join(pop, "oath", "users.oath")]
        break
    else:  # pam_totp builds: ours, extraN
        for ext in ("toml", "state", "lock"):
            paths.append(os.path.join(pop, module, "users", f"{name}.{ext}"))
for p in paths:
    try:
        with open(p, "rb") as f:
            while f.read(1 << 20):
                pass
    except FileNotFoundError:
        pass
