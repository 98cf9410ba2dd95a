#!/usr/bin/env bash
# Installs what the integration tests need and this machine may lack:
#   - Engine 20.10 (API 1.41) and its CLI from the distribution (docker.io),
#     which also brings containerd, runc and tini (docker-init),
#   - busybox-static, to build the test image without a registry,
#   - the current engine, containerd, buildx and compose from Debian sid,
#     unpacked (never installed) under $DOCKGATE_SID_ROOT/root so they do not
#     replace the distribution's engine; sid's docker-cli too, the CLI the
#     tests use where the machine has no docker CLI >= 23 of its own.
# Then it lays out $DOCKGATE_SID_ROOT/bin, the PATH directory the 28.5 daemon
# runs with: sid's dockerd, containerd and shim; runc and docker-init from sid
# only where they run on this libc (sid's need glibc 2.38, bookworm has 2.36),
# else the distribution's.
# Idempotent: a second run only checks.
set -euo pipefail
SID_ROOT=${DOCKGATE_SID_ROOT:-/opt/dockgate-sid}
export DEBIAN_FRONTEND=noninteractive

need_apt=()
command -v dockerd >/dev/null 2>&1 || need_apt+=(docker.io)
[ -x /usr/bin/tini-static ] || need_apt+=(tini)
[ -x /usr/sbin/runc ] || need_apt+=(runc)
static_busybox() {  # the test image holds /bin/busybox alone: it must be static
  [ -x /bin/busybox ] && /bin/busybox --list >/dev/null 2>&1 || return 1
  case "$(ldd /bin/busybox 2>&1 || true)" in *"not a dynamic"*) return 0 ;; esac
  return 1
}
static_busybox || need_apt+=(busybox-static)
command -v script >/dev/null 2>&1 || need_apt+=(bsdutils)
command -v git >/dev/null 2>&1 || need_apt+=(git)
# scripts/test.sh builds and tests the wheel in a venv; the container image
# test bootstraps its base with debootstrap; the systemd test needs
# systemd-analyze and systemd-socket-activate.
"${PYTHON:-python3}" -c 'import ensurepip, venv' >/dev/null 2>&1 || need_apt+=(python3-venv)
# The wheel is compiled (setup.py, mypyc): a C compiler, libc's headers and
# Python's own (python3-dev for Debian's python3; another interpreter brings them).
python_h=$("${PYTHON:-python3}" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
printf '#include <Python.h>\nint main(void) { return 0; }\n' \
  | gcc -fsyntax-only -I"$python_h" -x c - >/dev/null 2>&1 || need_apt+=(gcc libc6-dev python3-dev)
command -v debootstrap >/dev/null 2>&1 || need_apt+=(debootstrap)
command -v systemd-socket-activate >/dev/null 2>&1 || need_apt+=(systemd)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "install-engines: apt-get install ${need_apt[*]}"
  # Keep the packages' maintainer scripts from starting a system dockerd or
  # containerd (with its default bridge and iptables rules): the tests start
  # their own daemons.
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
  fi
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

if [ ! -x "$SID_ROOT/root/usr/sbin/dockerd" ] \
   || [ ! -x "$SID_ROOT/root/usr/libexec/docker/cli-plugins/docker-buildx" ] \
   || [ ! -x "$SID_ROOT/root/usr/libexec/docker/cli-plugins/docker-compose" ] \
   || [ ! -x "$SID_ROOT/root/usr/bin/docker" ]; then
  echo "install-engines: unpacking Debian sid's engine into $SID_ROOT/root"
  work="$SID_ROOT/apt"
  mkdir -p "$work/lists/partial" "$work/debs" "$SID_ROOT/root"
  echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian sid main" > "$work/sid.list"
  opts=(-o "Dir::Etc::sourcelist=$work/sid.list" -o "Dir::Etc::sourceparts=-"
        -o "Dir::State::Lists=$work/lists" -o "Dir::Cache::archives=$work/debs"
        -o "APT::Get::List-Cleanup=0")
  apt-get "${opts[@]}" update -qq
  (cd "$work/debs" && apt-get "${opts[@]}" download docker.io docker-cli containerd runc tini docker-buildx docker-compose >/dev/null)
  for deb in "$work"/debs/*.deb; do dpkg -x "$deb" "$SID_ROOT/root"; done
fi
# sid's dynamically linked helpers (runc, tini) may need a newer glibc than
# this system has: drop those that cannot load, so PATH falls through to the
# distribution's own (runc 1.1 works under containerd 2.x).
for f in "$SID_ROOT"/root/usr/bin/* "$SID_ROOT"/root/usr/sbin/*; do
  if [ -f "$f" ] && ldd "$f" 2>/dev/null | grep -q "not found"; then rm -f "$f"; fi
done

# The 28.5 daemon's PATH directory.
bin="$SID_ROOT/bin"
mkdir -p "$bin"
for f in containerd containerd-shim-runc-v2 ctr; do ln -sfn "../root/usr/bin/$f" "$bin/$f"; done
for f in dockerd docker-proxy; do ln -sfn "../root/usr/sbin/$f" "$bin/$f"; done
if "$SID_ROOT/root/usr/sbin/runc" --version >/dev/null 2>&1; then
  ln -sfn ../root/usr/sbin/runc "$bin/runc"
else
  ln -sfn /usr/sbin/runc "$bin/runc"
fi
if [ -x "$SID_ROOT/root/usr/bin/tini-static" ]; then
  ln -sfn ../root/usr/bin/tini-static "$bin/docker-init"
else
  ln -sfn /usr/bin/tini-static "$bin/docker-init"
fi

/usr/sbin/dockerd --version
"$bin/dockerd" --version
"$bin/containerd" --version
"$bin/runc" --version | head -1
"$bin/docker-init" --version
ls "$SID_ROOT/root/usr/libexec/docker/cli-plugins/"
