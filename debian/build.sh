#!/usr/bin/env bash
# Builds the Debian package: the release binary, the man pages (examples/man.rs, into
# target/man), then `cargo deb --no-build` with the [package.metadata.deb] of Cargo.toml.
# Prints the .deb's path as its last line. Extra arguments go to cargo deb (for example
# --dbgsym for a separate debug symbols package; the default strips the binary).
# Installs cargo-deb with `cargo install cargo-deb --locked` when it is missing (about 4 minutes
# on 2 cores).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if ! command -v cargo >/dev/null 2>&1 && [[ -f "$HOME/.cargo/env" ]]; then
    # shellcheck source=/dev/null
    source "$HOME/.cargo/env"
fi

if ! cargo deb --version >/dev/null 2>&1; then
    echo "installing cargo-deb" >&2
    cargo install cargo-deb --locked >&2
fi

# Reproducible: the man pages' date and the files' times come from the last commit.
if [[ -z "${SOURCE_DATE_EPOCH:-}" ]]; then
    SOURCE_DATE_EPOCH="$(git log -1 --format=%ct 2>/dev/null || date +%s)"
fi
export SOURCE_DATE_EPOCH

cargo build --release --locked --bin ringftpd >&2
# The generator is a dev tool: the test profile reuses what `cargo test` already built (CI runs
# this after the tests), where --release would compile the dev-dependencies a second time.
rm -rf target/man
cargo run --profile test --locked --example man -- target/man >&2

strip=(--strip)
for arg in "$@"; do
    case "$arg" in
    --dbgsym | --no-strip | --separate-debug-symbols) strip=() ;;
    esac
done
# cargo deb prints the path of the package it wrote as its last line.
deb="$(cargo deb --no-build --locked "${strip[@]}" "$@" | tail -n 1)"
if [[ ! -f "$deb" ]]; then
    echo "debian/build.sh: cargo deb did not report a package file (got: $deb)" >&2
    exit 1
fi
echo "$deb"
