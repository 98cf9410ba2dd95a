#!/usr/bin/env bash
# Makes the Debian bookworm root filesystem the container image is built on,
# the distribution's own way (debootstrap, minbase, python3 and its venv
# module), as a tarball for `docker import`.  No registry is needed: the
# packages come from the Debian mirror apt is configured with.
#
#   scripts/debian-base.sh [OUT.tar]     (default /opt/dockgate-base/bookworm.tar)
#
# The tarball is a cache: if OUT.tar exists it is kept (about a minute to
# make, 150 MB).  Needs root.
set -euo pipefail
out=${1:-/opt/dockgate-base/bookworm.tar}
[ -s "$out" ] && { echo "$out exists"; exit 0; }
command -v debootstrap >/dev/null || {
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
}
# The first deb URI in apt's sources (deb.debian.org unless configured otherwise).
mirror=$(apt-get indextargets --format '$(REPO_URI)' 2>/dev/null | grep -m1 -v security || true)
mirror=${mirror:-http://deb.debian.org/debian/}
root=$(mktemp -d /var/tmp/dgroot.XXXXXX)
trap 'rm -rf "$root"' EXIT
debootstrap --variant=minbase --include=python3,python3-venv bookworm "$root" "$mirror" >/dev/null
# Shrink: package lists, caches and documentation are not needed in the image.
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* \
  "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/info/* \
  "$root"/usr/share/locale/*
mkdir -p "$(dirname "$out")"
tar --numeric-owner -C "$root" -cf "$out.tmp" . && mv "$out.tmp" "$out"
echo "$out: $(du -h "$out" | cut -f1)"
