# pam-totp — developer and CI entry points. `make test` is what CI runs.
CARGO ?= cargo
TARGET_DIR ?= $(if $(CARGO_TARGET_DIR),$(abspath $(CARGO_TARGET_DIR)),$(CURDIR)/target)
PAM_TOTP_SO ?= $(TARGET_DIR)/release/libpam_totp.so

.PHONY: all build deps test fmt fmt-check clippy clean

all: build

build:
	$(CARGO) build --release --workspace

# Installs missing Debian packages (as root) and rustfmt/clippy.
deps:
	bash tests/deps.sh

test: deps
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) build --release --workspace
	PAM_TOTP_SO=$(PAM_TOTP_SO) $(CARGO) test --release --workspace

fmt:
	$(CARGO) fmt --all

fmt-check:
	$(CARGO) fmt --all -- --check

clippy:
	$(CARGO) clippy --workspace --all-targets -- -D warnings

clean:
	$(CARGO) clean
