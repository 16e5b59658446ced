# pam-totp — developer and CI entry points. `make test` is what CI runs.
CARGO ?= cargo
TARGET_DIR ?= $(if $(CARGO_TARGET_DIR),$(abspath $(CARGO_TARGET_DIR)),$(CURDIR)/target)
PAM_TOTP_SO ?= $(TARGET_DIR)/release/libpam_totp.so

.PHONY: all build deps check test fmt fmt-check clippy clean deb test-package docs e2e test-cockpit fleet-sql-test fleet-net-test fleet-test demo torture bench bench-fleet fuzz-quick

all: build

build:
	$(CARGO) build --release --workspace

# Installs missing Debian packages (as root) and rustfmt/clippy.
deps:
	bash tests/deps.sh

# Everyday work: fmt, clippy, unit, flow and golden tests. No root, no apt, no network; the
# tests that need root are reported as ignored (`make test` runs them).
check:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) test --release --workspace

test: deps
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) build --release --workspace
	PAM_TOTP_SO=$(PAM_TOTP_SO) $(CARGO) test --release --workspace -- --include-ignored
	PAM_TOTP_SO=$(PAM_TOTP_SO) PAM_TOTP_CLI=$(TARGET_DIR)/release/pam-totp python3 tests/e2e/test_e2e.py
	CARGO="$(CARGO)" CARGO_TARGET_DIR="$(TARGET_DIR)" bash tests/fleet/sql-test.sh
	bash tests/fleet/net-test.sh
	CARGO="$(CARGO)" CARGO_TARGET_DIR="$(TARGET_DIR)" FLEET_FAULTS=quick bash tests/fleet/fleet-test.sh
	CARGO="$(CARGO)" CARGO_TARGET_DIR="$(TARGET_DIR)" FLEET_FAULTS=quick FLEET_TEST_AGENT=1 bash tests/fleet/fleet-test.sh
	DEMO_PAUSE=0 CARGO_TARGET_DIR="$(TARGET_DIR)" bash tests/fleet/demo-fleet.sh
	TORTURE_QUICK=1 PAM_TOTP_SO=$(PAM_TOTP_SO) PAM_TOTP_CLI=$(TARGET_DIR)/release/pam-totp bash tests/torture/run.sh
	bash fuzz/run.sh 30
	CARGO="$(CARGO)" CARGO_TARGET_DIR="$(TARGET_DIR)" bash tests/package/test-package.sh

fmt:
	$(CARGO) fmt --all

fmt-check:
	$(CARGO) fmt --all -- --check

clippy:
	$(CARGO) clippy --workspace --all-targets -- -D warnings

clean:
	$(CARGO) clean

# Debian package -> target/debian/pam-totp_<version>-1_<arch>.deb (packaging/README.md)
deb:
	CARGO="$(CARGO)" CARGO_TARGET_DIR="$(TARGET_DIR)" bash packaging/build-deb.sh

# Lints the .deb and installs it into a throwaway Debian 12 container (root; the first run
# debootstraps a rootfs cached in /var/cache/pam-totp-test; skips without root)
test-package:
	CARGO="$(CARGO)" CARGO_TARGET_DIR="$(TARGET_DIR)" bash tests/package/test-package.sh

# Man pages and shell completions generated from the CLI's clap definitions
docs: build
	$(TARGET_DIR)/release/pam-totp generate-docs $(TARGET_DIR)/docs

# End-to-end: real sshd, ssh, login and su in throwaway namespace containers (root)
e2e: build
	PAM_TOTP_SO=$(PAM_TOTP_SO) PAM_TOTP_CLI=$(TARGET_DIR)/release/pam-totp python3 tests/e2e/test_e2e.py

# The Cockpit page (cockpit/pam-totp) and Cockpit's login in headless Chromium: the e2e
# scenarios named cockpit* (`make test` runs them with the rest of the e2e suite); writes the
# README screenshots to docs/img/
test-cockpit: build
	PAM_TOTP_SO=$(PAM_TOTP_SO) PAM_TOTP_CLI=$(TARGET_DIR)/release/pam-totp python3 tests/e2e/test_e2e.py -k cockpit

# Fleet mode's database half (fleet/sql) in a throwaway PostgreSQL 15 cluster: privileges,
# secrets at rest, parallel checks, throttle, recovery codes, TOTP equal to Rust's (root;
# skips without root)
fleet-sql-test:
	CARGO="$(CARGO)" CARGO_TARGET_DIR="$(TARGET_DIR)" bash tests/fleet/sql-test.sh

# Fleet mode's network half: the fleet store in PostgreSQL 15 in a network namespace, TLS with
# client certificates, 8 host namespaces on a bridge (addresses only inside them): one success
# for 128 parallel checks, wrong CA, impersonation, store down (root; skips without root)
fleet-net-test:
	bash tests/fleet/net-test.sh

# Fleet mode end to end: 8 host namespaces log users in through the real module (store=, the
# client library) against the store over TLS; one success fleet-wide, replay, throttle, recovery
# codes, disable and enroll --force on every host at once, privileges, secrets at rest, store
# down or wrong CA fails closed, the same results as file mode (root; skips without root;
# FULL=1 for 8 × 64 parallel logins). FLEET_FAULTS=1 adds the fault scenarios against a
# primary with a synchronous and an asynchronous standby: the primary killed, partitions, 20
# failovers under load without a lost step, the negative control with synchronous_commit =
# local, host clocks ±5 min (FLEET_FAULTS=quick, what `make test` runs: 3 failovers)
FLEET_FAULTS ?=
fleet-test: build
	CARGO="$(CARGO)" CARGO_TARGET_DIR="$(TARGET_DIR)" FLEET_FAULTS="$(FLEET_FAULTS)" bash tests/fleet/fleet-test.sh

# A sandboxed sshd with the module, a demo user enrolled on your terminal; DEMO=auto runs the
# whole story unattended
DEMO ?=
demo: deps build
	PAM_TOTP_SO=$(PAM_TOTP_SO) PAM_TOTP_CLI=$(TARGET_DIR)/release/pam-totp DEMO=$(DEMO) bash tests/e2e/demo.sh

# Crash safety (kill -9), full disk, login storms, bad input, valgrind: the full run
# (`make test` runs the quick variant)
torture: build
	PAM_TOTP_SO=$(PAM_TOTP_SO) PAM_TOTP_CLI=$(TARGET_DIR)/release/pam-totp bash tests/torture/run.sh

# Ours vs pam_google_authenticator vs pam_oath through real libpam (BENCHMARKS.md)
# then fleet mode: 8 hosts against a primary with a synchronous standby (bench/fleet.sh;
# BENCH_FLEET=0 skips it)
BENCH_FLEET ?= 1
bench: deps build
	PAM_TOTP_SO=$(PAM_TOTP_SO) bash bench/run.sh
	if [ "$(BENCH_FLEET)" != 0 ]; then CARGO_TARGET_DIR="$(TARGET_DIR)" bash bench/fleet.sh; fi

# Fleet mode alone: logins/s, p50/p99 of 8 hosts in parallel, file mode beside it, the cost of
# one login (BENCHMARKS.md "fleet mode")
bench-fleet: build
	CARGO_TARGET_DIR="$(TARGET_DIR)" bash bench/fleet.sh

# Every fuzz target for 30 s from the committed corpus (cargo-fuzz; `fuzz/run.sh 600` for long runs)
fuzz-quick: deps
	bash fuzz/run.sh 30
