#!/usr/bin/env bash
# Builds and tests this crate against Keyward's crates as `cargo package` made them, the way
# a user gets them from crates.io. Run from anywhere; CI runs it after
# `cargo publish --dry-run --workspace`, which leaves the packages in target/package.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
target="${CARGO_TARGET_DIR:-$root/target}"
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' "$root/Cargo.toml" | head -n 1)

# The two crates this service uses, packaged as crates.io would get them (keyward-sqlite's
# dependency on keyward resolves to the packaged keyward).
(cd "$root" && cargo package -p keyward -p keyward-sqlite --no-verify --allow-dirty)
unpacked="$target/downstream-packages"
rm -rf "$unpacked" && mkdir -p "$unpacked"
patch=()
for crate in keyward keyward-sqlite; do
  tar -xzf "$target/package/$crate-$version.crate" -C "$unpacked"
  patch+=(--config "patch.crates-io.$crate.path=\"$unpacked/$crate-$version\"")
done
# Start from the workspace's lock file so that the same dependency versions are used (and
# already-built artifacts reused); cargo drops what this crate does not need.
cp "$root/Cargo.lock" "$here/Cargo.lock"
cd "$here"
CARGO_TARGET_DIR="$target" cargo test "${patch[@]}"
