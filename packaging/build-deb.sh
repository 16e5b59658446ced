#!/usr/bin/env bash
# packaging/build-deb.sh — build target/debian/pam-totp_<version>-<rev>_<arch>.deb (`make deb`).
#
# Why dpkg-deb and not cargo-deb or dpkg-buildpackage:
#   - cargo-deb is one more crate to compile (or fetch) on every CI machine, and its model
#     (metadata in Cargo.toml, generated maintainer scripts) gives less control over what
#     matters most here: the maintainer scripts (pam-auth-update on configure/remove, state
#     directory created on configure and deleted only on purge) and the conffile.
#   - dpkg-buildpackage wants a full debian/ source package (rules, debhelper, a clean
#     source tree, build-dependencies on cargo/rustc from Debian) — heavy for a binary that
#     cargo already built with the project's own toolchain.
#   - dpkg-deb ships with dpkg (always present on Debian); this script does what debhelper
#     would (strip, gzip -9n man pages and changelog, md5sums, dpkg-shlibdeps for Depends,
#     root:root ownership, reproducible mtimes), and lintian checks the result.
#
# Environment (all optional):
#   CARGO            cargo command (default: cargo)
#   CARGO_TARGET_DIR where cargo builds (default: <repo>/target); the .deb goes to $it/debian/
#   DEB_REVISION     Debian revision (default: 1); packaging/debian/changelog must have an
#                    entry for <version>-<revision>
#   PAM_TOTP_DEB_NO_BUILD=1  use the release binaries already built, do not run cargo
# Prints the path of the .deb on the last line of stdout.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
pkg=pam-totp
CARGO=${CARGO:-cargo}
target_dir=${CARGO_TARGET_DIR:-$root/target}
case "$target_dir" in /*) ;; *) target_dir=$root/$target_dir ;; esac
revision=${DEB_REVISION:-1}

die() {
    echo "build-deb.sh: $*" >&2
    exit 1
}
for tool in dpkg-deb dpkg-shlibdeps dpkg-architecture dpkg-parsechangelog strip gzip md5sum; do
    command -v "$tool" >/dev/null 2>&1 ||
        die "missing $tool (apt-get install dpkg-dev binutils gzip; or run tests/deps.sh)"
done

# ---- version, architecture ---------------------------------------------------------------
# The version is [workspace.package] version in the top-level Cargo.toml.
upstream=$(awk '
    /^\[/ { in_ws = ($0 == "[workspace.package]") }
    in_ws && /^version[ \t]*=/ { v = $0; sub(/^[^=]*=[ \t]*"/, "", v); sub(/".*/, "", v); print v; exit }
' "$root/Cargo.toml")
[[ "$upstream" =~ ^[0-9][0-9A-Za-z.+~-]*$ ]] ||
    die "cannot read [workspace.package] version from $root/Cargo.toml (got '$upstream')"
# Cargo's pre-release separator '-' is not allowed in a Debian upstream version; '~' sorts
# before the release, as semver's pre-release does.
version="${upstream//-/\~}-$revision"
arch=$(dpkg --print-architecture)
multiarch=$(dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null || gcc -print-multiarch)
[[ -n "$multiarch" ]] || die "cannot determine the multiarch triplet"

changelog=$here/debian/changelog
cl_version=$(dpkg-parsechangelog -l "$changelog" -S Version)
[[ "$cl_version" == "$version" ]] ||
    die "packaging/debian/changelog's newest entry is $cl_version, the package is $version:" \
        "add an entry for $version at the top of packaging/debian/changelog"
# Reproducible builds: every timestamp is the changelog's date.
SOURCE_DATE_EPOCH=$(dpkg-parsechangelog -l "$changelog" -S Timestamp)
export SOURCE_DATE_EPOCH

# ---- binaries ----------------------------------------------------------------------------
if [[ "${PAM_TOTP_DEB_NO_BUILD:-}" != 1 ]]; then
    echo "build-deb.sh: $CARGO build --release --workspace" >&2
    (cd "$root" && CARGO_TARGET_DIR=$target_dir "$CARGO" build --release --workspace >&2)
fi
so=$target_dir/release/libpam_totp.so
cli=$target_dir/release/pam-totp
selfhelper=$target_dir/release/pam-totp-self
storelib=$target_dir/release/libpam_totp_store.so
agent=$target_dir/release/pam-totp-agent
[[ -x "$agent" ]] || die "$agent is missing (cargo build --release --workspace)"
[[ -f "$storelib" ]] || die "$storelib is missing (cargo build --release --workspace)"
[[ -f "$so" ]] || die "$so is missing (cargo build --release --workspace)"
[[ -x "$selfhelper" ]] || die "$selfhelper is missing (cargo build --release --workspace)"
[[ -x "$cli" ]] || die "$cli is missing (cargo build --release --workspace)"
# A test build (feature fault-injection: module option fault=panic) must never be shipped.
! grep -q "fault injected by the module option" "$so" ||
    die "$so is a test build (feature fault-injection): cargo build --release --workspace"

# ---- staging tree ------------------------------------------------------------------------
umask 022
out_dir=$target_dir/debian
stage=$out_dir/${pkg}_${version}_${arch}
deb=$out_dir/${pkg}_${version}_${arch}.deb
rm -rf "$stage"
mkdir -p "$stage/DEBIAN"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

doc=$stage/usr/share/doc/$pkg
subst() { # subst SRC DST: fill in @VERSION@
    sed -e "s/@VERSION@/$version/g" "$1" >"$2"
}
man_install() { # man_install FILE: gzip -9n into /usr/share/man/manN/
    local f=$1 name section
    name=$(basename "$f")
    section=${name##*.}
    install -d "$stage/usr/share/man/man$section"
    subst "$f" "$work/$name"
    gzip -9n -c "$work/$name" >"$stage/usr/share/man/man$section/$name.gz"
}

# The module and the CLI, stripped as dh_strip does.
install -D -m 0644 "$so" "$stage/usr/lib/$multiarch/security/pam_totp.so"
strip --remove-section=.comment --remove-section=.note --strip-unneeded \
    "$stage/usr/lib/$multiarch/security/pam_totp.so"
# The fleet client library (SPEC §11): loaded by the module only on lines with store=.
install -D -m 0644 "$storelib" "$stage/usr/lib/pam-totp/libpam_totp_store.so"
strip --remove-section=.comment --remove-section=.note --strip-unneeded \
    "$stage/usr/lib/pam-totp/libpam_totp_store.so"
install -D -m 0755 "$cli" "$stage/usr/sbin/pam-totp"
# The host's store agent (fleet mode, store.toml's agent_socket) and its unit, not enabled by
# the package: `systemctl enable --now pam-totp-agent` on hosts with a store (README).
install -D -m 0755 "$agent" "$stage/usr/sbin/pam-totp-agent"
strip --remove-section=.comment --remove-section=.note "$stage/usr/sbin/pam-totp-agent"
install -D -m 0644 "$here/systemd/pam-totp-agent.service" "$stage/lib/systemd/system/pam-totp-agent.service"
strip --remove-section=.comment --remove-section=.note "$stage/usr/sbin/pam-totp"
# The self-service helper: setuid root, the only privileged part of `pam-totp` run by a user.
install -D -m 4755 "$selfhelper" "$stage/usr/libexec/pam-totp/pam-totp-self"
strip --remove-section=.comment --remove-section=.note "$stage/usr/libexec/pam-totp/pam-totp-self"
chmod 4755 "$stage/usr/libexec/pam-totp/pam-totp-self"
# Its PAM service (a conffile): the password as the system checks it.
install -D -m 0644 "$here/pam.d/pam-totp" "$stage/etc/pam.d/pam-totp"

# The Cockpit page (static files; Cockpit loads it when installed, `Suggests: cockpit`; the
# reasons for shipping it in this package are in packaging/README.md).
for f in manifest.json index.html pam-totp.js pam-totp.css; do
    install -D -m 0644 "$root/cockpit/pam-totp/$f" "$stage/usr/share/cockpit/pam-totp/$f"
done

# pam-auth-update profile and the policy (a conffile).
install -D -m 0644 "$here/pam-configs/pam-totp" "$stage/usr/share/pam-configs/pam-totp"
install -D -m 0644 "$here/policy.toml" "$stage/etc/pam-totp/policy.toml"

# Man pages written by hand.
man_install "$here/man/pam_totp.8"
man_install "$here/man/pam-totp-policy.5"
man_install "$here/man/pam-totp-agent.8"

# The CLI's man pages and completions, generated from its clap definition by the hidden
# verb `pam-totp generate-docs OUT_DIR` (OUT_DIR/man/pam-totp.N and one page per verb,
# pam-totp-enroll.N...; OUT_DIR/completions/{pam-totp.bash,_pam-totp,pam-totp.fish}).
# pam-totp lives in /usr/sbin, so its pages belong in section 8: pages generated for
# section 1 (clap_mangen's default) are moved there, with their cross-references.
gen=$work/gen
if "$cli" generate-docs "$gen" >/dev/null 2>"$work/gen.err" && compgen -G "$gen/man/pam-totp.[18]" >/dev/null; then
    for f in "$gen"/man/pam-totp*.[18]; do
        name=$(basename "$f")
        if [[ $name == *.1 ]]; then
            sed -e 's/^\(\.TH [^ ]*\) 1 /\1 8 /' -e 's/^\(pam\\-totp[^ ]*\)(1)$/\1(8)/' \
                "$f" >"$gen/man/${name%.1}.8"
            f=$gen/man/${name%.1}.8
        fi
        man_install "$f"
    done
else
    echo "build-deb.sh: WARNING: 'pam-totp generate-docs' failed or wrote no man page;" \
        "using the placeholder pam-totp(8):" >&2
    sed 's/^/    /' "$work/gen.err" >&2
    man_install "$here/man/pam-totp.8"
fi
completion() { # completion SRC-NAME... DST: the first generated file that exists
    local dst=${*: -1} n
    for n in "${@:1:$#-1}"; do
        if [[ -f "$gen/completions/$n" ]]; then
            install -D -m 0644 "$gen/completions/$n" "$stage$dst"
            return 0
        fi
    done
    echo "build-deb.sh: WARNING: no generated completion among: ${*:1:$#-1}" >&2
}
completion pam-totp.bash pam-totp /usr/share/bash-completion/completions/pam-totp
completion _pam-totp pam-totp.zsh /usr/share/zsh/vendor-completions/_pam-totp
completion pam-totp.fish /usr/share/fish/vendor_completions.d/pam-totp.fish

# Documentation.
install -d "$doc"
install -m 0644 "$root/README.md" "$doc/README.md"
install -m 0644 "$here/debian/README.Debian" "$doc/README.Debian"
install -m 0644 "$here/debian/copyright" "$doc/copyright"
gzip -9n -c "$changelog" >"$doc/changelog.Debian.gz"
install -D -m 0644 "$here/debian/lintian-overrides" "$stage/usr/share/lintian/overrides/$pkg"

# ---- DEBIAN/ -----------------------------------------------------------------------------
install -m 0644 "$here/debian/conffiles" "$stage/DEBIAN/conffiles"
for s in postinst prerm postrm; do
    install -m 0755 "$here/debian/$s" "$stage/DEBIAN/$s"
done

# Depends from the binaries' dynamic libraries: dpkg-shlibdeps reads debian/control of a
# source tree, so give it a minimal fake one in a temp dir (the usual trick outside
# debhelper).
mkdir -p "$work/src/debian"
printf 'Source: %s\n\nPackage: %s\nArchitecture: any\n' "$pkg" "$pkg" >"$work/src/debian/control"
shlibs=$(cd "$work/src" && dpkg-shlibdeps -O \
    "$stage/usr/lib/$multiarch/security/pam_totp.so" "$stage/usr/sbin/pam-totp" \
    "$stage/usr/lib/pam-totp/libpam_totp_store.so" "$stage/usr/sbin/pam-totp-agent" \
    "$stage/usr/libexec/pam-totp/pam-totp-self" 2>"$work/shlibdeps.err") || {
    cat "$work/shlibdeps.err" >&2
    die "dpkg-shlibdeps failed"
}
grep -v 'binaries to analyze should already be installed' "$work/shlibdeps.err" >&2 || true
shlibs=${shlibs#shlibs:Depends=}
[[ -n "$shlibs" ]] || die "dpkg-shlibdeps found no dependencies"
# libpam-runtime: pam-auth-update and /usr/share/pam-configs (1.0.1-6 introduced them).
depends="$shlibs, libpam-runtime (>= 1.0.1-6)"

installed_size=$(du -sk --apparent-size --exclude=DEBIAN "$stage" | cut -f1)
sed -e "s/@VERSION@/$version/" -e "s/@ARCH@/$arch/" \
    -e "s/@INSTALLED_SIZE@/$installed_size/" -e "s/@DEPENDS@/$depends/" \
    "$here/debian/control.in" >"$stage/DEBIAN/control"

# md5sums of every file but the conffiles (dpkg keeps theirs in its status), as dh_md5sums.
(
    cd "$stage"
    find . -path ./DEBIAN -prune -o -type f -printf '%P\n' | LC_ALL=C sort |
        grep -vxF -f <(sed 's|^/||' DEBIAN/conffiles) | tr '\n' '\0' | xargs -0 md5sum
) >"$stage/DEBIAN/md5sums"
chmod 0644 "$stage/DEBIAN/md5sums"

# Directories 0755, files 0644 unless executable; every mtime = SOURCE_DATE_EPOCH.
find "$stage" -type d -exec chmod 0755 {} +
find "$stage" -exec touch --no-dereference --date="@$SOURCE_DATE_EPOCH" {} +

rm -f "$deb"
dpkg-deb --root-owner-group -Zxz --build "$stage" "$deb" >&2
echo "$deb"
