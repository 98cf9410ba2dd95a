#!/usr/bin/env bash
# Installs what the integration tests need and this machine may lack:
#   - Engine 20.10 (API 1.41) and its CLI from the distribution (docker.io),
#   - busybox-static, to build the test image without a registry,
#   - the current engine, containerd, runc, buildx and compose from Debian sid,
#     unpacked (never installed) under $DOCKGATE_SID_ROOT so they do not
#     replace the distribution's engine.
# Idempotent: a second run only checks.
set -euo pipefail
SID_ROOT=${DOCKGATE_SID_ROOT:-/opt/dockgate-sid}
export DEBIAN_FRONTEND=noninteractive

need_apt=()
command -v dockerd >/dev/null 2>&1 || need_apt+=(docker.io)
[ -x /bin/busybox ] && /bin/busybox --list >/dev/null 2>&1 && ldd /bin/busybox 2>&1 | grep -q "not a dynamic" || need_apt+=(busybox-static)
command -v script >/dev/null 2>&1 || need_apt+=(bsdutils)
if [ ${#need_apt[@]} -gt 0 ]; then
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

if [ ! -x "$SID_ROOT/root/usr/sbin/dockerd" ] || [ ! -x "$SID_ROOT/root/usr/libexec/docker/cli-plugins/docker-buildx" ]; then
  work="$SID_ROOT/apt"
  mkdir -p "$work/lists/partial" "$work/debs" "$SID_ROOT/root"
  echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian sid main" > "$work/sid.list"
  opts=(-o "Dir::Etc::sourcelist=$work/sid.list" -o "Dir::Etc::sourceparts=-"
        -o "Dir::State::Lists=$work/lists" -o "Dir::Cache::archives=$work/debs"
        -o "APT::Get::List-Cleanup=0")
  apt-get "${opts[@]}" update -qq
  (cd "$work/debs" && apt-get "${opts[@]}" download docker.io containerd runc tini docker-buildx docker-compose >/dev/null)
  for deb in "$work"/debs/*.deb; do dpkg -x "$deb" "$SID_ROOT/root"; done
fi
"$SID_ROOT/root/usr/sbin/dockerd" --version
ls "$SID_ROOT/root/usr/libexec/docker/cli-plugins/"
