#!/usr/bin/env bash
# Builds the Debian packages into target/debian/:
#   amd64  native build
#   arm64  Raspberry Pi OS 64-bit (Pi 3/4/5, Zero 2), cross-built with aarch64-linux-gnu-gcc
#   armhf  Raspberry Pi OS 32-bit (ARMv7: Pi 2/3/4/Zero 2), cross-built with arm-linux-gnueabihf-gcc
# All need glibc ≥ 2.34: Debian 12 / Raspberry Pi OS bookworm (glibc 2.36) and newer (trixie).
#
# Usage: packaging/build-debs.sh [amd64] [arm64] [armhf]      (default: all three)
# Needs: cargo-deb (cargo install --locked cargo-deb), and for the ARM packages
#   rustup target add aarch64-unknown-linux-gnu armv7-unknown-linux-gnueabihf
#   apt-get install gcc-aarch64-linux-gnu gcc-arm-linux-gnueabihf libc6-dev-arm64-cross libc6-dev-armhf-cross
set -euo pipefail
cd "$(dirname "$0")/.."
. packaging/env.sh
archs=${*:-amd64 arm64 armhf}
mkdir -p target/debian
for arch in $archs; do
    case $arch in
        amd64) target= ;;
        arm64) target=aarch64-unknown-linux-gnu ;;
        armhf) target=armv7-unknown-linux-gnueabihf ;;
        *) echo "unknown architecture $arch (amd64, arm64, armhf)" >&2; exit 64 ;;
    esac
    if [ -n "$target" ]; then
        rustup target list --installed 2>/dev/null | grep -qx "$target" \
            || { echo "missing Rust target $target: rustup target add $target" >&2; exit 1; }
        cargo build --release --locked --target "$target"
        deb=$(cargo deb --no-build --no-strip --target "$target" --output target/debian/ | tail -n 1)
    else
        cargo build --release --locked
        deb=$(cargo deb --no-build --no-strip --output target/debian/ | tail -n 1)
    fi
    # cargo-deb only warns when it finds no unit: refuse such a package.
    contents=$(dpkg-deb -c "$deb")
    grep -q 'lib/systemd/system/cems-gateway.service' <<<"$contents" \
        || { echo "$deb has no systemd unit" >&2; exit 1; }
    grep -q 'etc/cems-gateway/cems-gateway.toml' <<<"$contents" \
        || { echo "$deb has no configuration" >&2; exit 1; }
    [ "$(dpkg-deb -f "$deb" Architecture)" = "$arch" ] \
        || { echo "$deb is not for $arch" >&2; exit 1; }
    echo "built $deb ($(stat -c %s "$deb") bytes)"
done
