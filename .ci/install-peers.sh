#!/usr/bin/env bash
# Install the real peers the integration tests talk to:
#   * Consul 1.8.7 (Debian bullseye's .deb, unpacked, no host apt changes)
#   * HTCondor 23.9 (Debian trixie, in a debootstrapped minbase chroot)
#   * Prometheus 2.24 and promtool (Debian bullseye's prometheus .deb, unpacked, no service
#     installed), which check and run the rendered Prometheus scrape config
#
# Target directory: $NOMADWN_PEERS_DIR, default <repo>/.peers (a relative
# NOMADWN_PEERS_DIR is taken relative to the repository root).
# Idempotent: each peer is skipped when it is already installed and works.
# Needs root (debootstrap, chroot). Installs no Python packages.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PEERS_DIR="${NOMADWN_PEERS_DIR:-.peers}"
case "$PEERS_DIR" in
  /*) ;;
  *) PEERS_DIR="$REPO_ROOT/$PEERS_DIR" ;;
esac

CONSUL_SUITE="bullseye"
CONDOR_SUITE="trixie"
# Bookworm's and trixie's builds have no Consul service discovery (Debian dropped it with Consul).
PROMETHEUS_SUITE="bullseye"
KEYRING="/usr/share/keyrings/debian-archive-keyring.gpg"
FALLBACK_MIRROR="http://deb.debian.org/debian"

T0=$(date +%s)
log() { printf '[install-peers %4ss] %s\n' "$(( $(date +%s) - T0 ))" "$*"; }
die() { printf '[install-peers] ERROR: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "must run as root (needs apt-get, debootstrap and chroot)"

# --- Debian mirror the host uses --------------------------------------------
# Looks at one-line *.list files and deb822 *.sources files; takes the first
# URI that ends in /debian (not debian-security, not a third-party repo).
host_mirror() {
  local f uri
  local -a files=()
  [ -f /etc/apt/sources.list ] && files+=(/etc/apt/sources.list)
  for f in /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] && files+=("$f")
  done
  for f in "${files[@]}"; do
    while read -r uri; do
      uri="${uri%/}"
      case "$uri" in
        http://*/debian|https://*/debian) printf '%s\n' "$uri"; return 0 ;;
      esac
    done < <(
      sed -n -e 's/^[[:space:]]*deb[[:space:]]\+\(\[[^]]*\][[:space:]]\+\)\?\([^[:space:]]\+\).*/\2/p' \
             -e 's/^[[:space:]]*URIs:[[:space:]]*//p' "$f" | tr ' ' '\n' | sed '/^$/d'
    )
  done
  printf '%s\n' "$FALLBACK_MIRROR"
}

MIRROR="$(host_mirror)"
log "peers dir: $PEERS_DIR"
log "debian mirror: $MIRROR"
mkdir -p "$PEERS_DIR/bin"
# Keep the installed peers out of git without touching the repo's .gitignore.
[ -f "$PEERS_DIR/.gitignore" ] || printf '*\n' >"$PEERS_DIR/.gitignore"

# --- Consul ------------------------------------------------------------------
install_consul() {
  local dest="$PEERS_DIR/consul" bin="$PEERS_DIR/consul/usr/bin/consul"
  if [ -x "$bin" ] && "$bin" version >/dev/null 2>&1; then
    ln -sfn ../consul/usr/bin/consul "$PEERS_DIR/bin/consul"
    log "consul: already installed ($("$bin" version | head -n1)), skipping"
    return 0
  fi
  local t=$(date +%s)
  log "consul: downloading from $CONSUL_SUITE"
  local work
  work="$(mktemp -d "$PEERS_DIR/.apt-consul.XXXXXX")"
  CONSUL_WORK="$work"
  mkdir -p "$work/lists/partial" "$work/cache/archives/partial" "$work/dl"
  printf 'deb [signed-by=%s] %s %s main\n' "$KEYRING" "$MIRROR" "$CONSUL_SUITE" >"$work/sources.list"
  local -a aptopts=(
    -o "Dir::Etc::sourcelist=$work/sources.list"
    -o "Dir::Etc::sourceparts=-"
    -o "Dir::State::Lists=$work/lists"
    -o "Dir::Cache=$work/cache"
    -o "Dir::Cache::pkgcache="
    -o "Dir::Cache::srcpkgcache="
    -o "APT::Sandbox::User=root"
    -o "Acquire::Check-Valid-Until=false"
    -o "Acquire::Languages=none"
  )
  apt-get -q "${aptopts[@]}" update >"$work/update.log" 2>&1 \
    || { cat "$work/update.log" >&2; die "consul: apt-get update ($CONSUL_SUITE) failed"; }
  (cd "$work/dl" && apt-get -q "${aptopts[@]}" download consul) >"$work/download.log" 2>&1 \
    || { cat "$work/download.log" >&2; die "consul: apt-get download failed"; }
  local deb
  deb="$(ls "$work"/dl/consul_*.deb)"
  rm -rf "$dest"
  mkdir -p "$dest"
  dpkg-deb -x "$deb" "$dest"
  "$bin" version >/dev/null || die "consul: unpacked binary does not run"
  ln -sfn ../consul/usr/bin/consul "$PEERS_DIR/bin/consul"
  rm -rf "$work"
  CONSUL_WORK=""
  log "consul: installed $(basename "$deb") in $(( $(date +%s) - t ))s"
}

# --- promtool ----------------------------------------------------------------
# `apt-get install prometheus` would install and start a service: unpack the .deb instead.
# Installed means: promtool runs and accepts consul_sd_configs.
promtool_has_consul_sd() {
  local bin="$1" probe
  probe="$(mktemp "$PEERS_DIR/.promtool-probe.XXXXXX")"
  printf 'scrape_configs:\n- job_name: probe\n  consul_sd_configs:\n  - server: localhost:8500\n' >"$probe"
  local ok=0
  "$bin" check config "$probe" >/dev/null 2>&1 || ok=1
  rm -f "$probe"
  return "$ok"
}
install_promtool() {
  local dest="$PEERS_DIR/prometheus" bin="$PEERS_DIR/prometheus/usr/bin/promtool"
  if [ -x "$bin" ] && promtool_has_consul_sd "$bin"; then
    ln -sfn ../prometheus/usr/bin/promtool "$PEERS_DIR/bin/promtool"
    ln -sfn ../prometheus/usr/bin/prometheus "$PEERS_DIR/bin/prometheus"
    log "promtool: already installed ($("$bin" --version 2>&1 | head -n1)), skipping"
    return 0
  fi
  local t=$(date +%s)
  log "promtool: downloading prometheus from $PROMETHEUS_SUITE"
  local work
  work="$(mktemp -d "$PEERS_DIR/.apt-prometheus.XXXXXX")"
  PROMETHEUS_WORK="$work"
  mkdir -p "$work/lists/partial" "$work/cache/archives/partial" "$work/dl"
  printf 'deb [signed-by=%s] %s %s main\n' "$KEYRING" "$MIRROR" "$PROMETHEUS_SUITE" >"$work/sources.list"
  local -a aptopts=(
    -o "Dir::Etc::sourcelist=$work/sources.list"
    -o "Dir::Etc::sourceparts=-"
    -o "Dir::State::Lists=$work/lists"
    -o "Dir::Cache=$work/cache"
    -o "Dir::Cache::pkgcache="
    -o "Dir::Cache::srcpkgcache="
    -o "APT::Sandbox::User=root"
    -o "Acquire::Check-Valid-Until=false"
    -o "Acquire::Languages=none"
  )
  apt-get -q "${aptopts[@]}" update >"$work/update.log" 2>&1 \
    || { cat "$work/update.log" >&2; die "promtool: apt-get update ($PROMETHEUS_SUITE) failed"; }
  (cd "$work/dl" && apt-get -q "${aptopts[@]}" download prometheus) >"$work/download.log" 2>&1 \
    || { cat "$work/download.log" >&2; die "promtool: apt-get download prometheus failed"; }
  local deb
  deb="$(ls "$work"/dl/prometheus_*.deb)"
  rm -rf "$dest"
  mkdir -p "$dest"
  dpkg-deb -x "$deb" "$dest"
  promtool_has_consul_sd "$bin" || die "promtool: the unpacked promtool does not run or lacks Consul discovery"
  ln -sfn ../prometheus/usr/bin/promtool "$PEERS_DIR/bin/promtool"
  ln -sfn ../prometheus/usr/bin/prometheus "$PEERS_DIR/bin/prometheus"
  rm -rf "$work"
  PROMETHEUS_WORK=""
  log "promtool: installed $(basename "$deb") in $(( $(date +%s) - t ))s"
}

# --- HTCondor ----------------------------------------------------------------
CHROOT="$PEERS_DIR/condor-root"
PROC_MOUNTED=0
CONSUL_WORK=""
PROMETHEUS_WORK=""
on_exit() {
  cleanup_chroot
  if [ -n "$CONSUL_WORK" ]; then rm -rf "$CONSUL_WORK"; fi
  if [ -n "$PROMETHEUS_WORK" ]; then rm -rf "$PROMETHEUS_WORK"; fi
}
trap on_exit EXIT
trap 'exit 130' INT TERM
# Unmount whatever an interrupted debootstrap left mounted below $1.
umount_under() {
  local m
  awk -v root="$1" '$2 == root || index($2, root "/") == 1 { print $2 }' /proc/mounts \
    | sort -r | while read -r m; do umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true; done
}
cleanup_chroot() {
  if [ "$PROC_MOUNTED" -eq 1 ]; then
    umount "$CHROOT/proc" 2>/dev/null || umount -l "$CHROOT/proc" 2>/dev/null || true
    PROC_MOUNTED=0
  fi
  rm -f "$CHROOT/usr/sbin/policy-rc.d" 2>/dev/null || true
}

in_chroot() {
  chroot "$CHROOT" /usr/bin/env -i \
    PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    HOME=/root LANG=C.UTF-8 DEBIAN_FRONTEND=noninteractive "$@"
}

install_condor() {
  if [ -x "$CHROOT/usr/sbin/condor_master" ]; then
    log "condor: already installed in $CHROOT, skipping"
    return 0
  fi
  local t=$(date +%s)
  if ! command -v debootstrap >/dev/null 2>&1; then
    log "condor: installing debootstrap on the host"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q debootstrap >/dev/null 2>&1 || {
      apt-get update -q >/dev/null
      DEBIAN_FRONTEND=noninteractive apt-get install -y -q debootstrap >/dev/null
    }
  fi
  if [ ! -x "$CHROOT/usr/bin/apt-get" ] || [ ! -f "$CHROOT/.nomadwn-debootstrap-ok" ]; then
    log "condor: debootstrap --variant=minbase $CONDOR_SUITE (takes ~40s)"
    # A half-finished chroot from an interrupted run is not reusable.
    if [ -d "$CHROOT" ]; then
      umount_under "$CHROOT"
      rm -rf --one-file-system "$CHROOT"
    fi
    mkdir -p "$CHROOT"
    debootstrap --variant=minbase --keyring="$KEYRING" "$CONDOR_SUITE" "$CHROOT" "$MIRROR" \
      >"$PEERS_DIR/debootstrap.log" 2>&1 \
      || { tail -n 30 "$PEERS_DIR/debootstrap.log" >&2; die "condor: debootstrap failed (log: $PEERS_DIR/debootstrap.log)"; }
    touch "$CHROOT/.nomadwn-debootstrap-ok"
    log "condor: debootstrap done in $(( $(date +%s) - t ))s"
  fi
  cp -L /etc/resolv.conf "$CHROOT/etc/resolv.conf" 2>/dev/null || true
  # The mirror may be a frozen snapshot whose Release files have expired.
  printf 'Acquire::Check-Valid-Until "false";\nAcquire::Languages "none";\n' \
    >"$CHROOT/etc/apt/apt.conf.d/99nomadwn-peers"
  # Never start services while installing into the chroot.
  printf '#!/bin/sh\nexit 101\n' >"$CHROOT/usr/sbin/policy-rc.d"
  chmod 0755 "$CHROOT/usr/sbin/policy-rc.d"
  if ! mountpoint -q "$CHROOT/proc"; then
    mount -t proc proc "$CHROOT/proc"
    PROC_MOUNTED=1
  fi
  local t2=$(date +%s)
  log "condor: apt-get install htcondor inside the chroot (takes ~20s)"
  {
    in_chroot apt-get -q update \
      && in_chroot apt-get -q install -y --no-install-recommends htcondor
  } >"$PEERS_DIR/condor-apt.log" 2>&1 \
    || { tail -n 30 "$PEERS_DIR/condor-apt.log" >&2; die "condor: apt-get install htcondor failed (log: $PEERS_DIR/condor-apt.log)"; }
  in_chroot apt-get -q clean >/dev/null 2>&1 || true
  cleanup_chroot
  [ -x "$CHROOT/usr/sbin/condor_master" ] || die "condor: condor_master missing after install"
  log "condor: htcondor $(in_chroot condor_version | head -n1 | awk '{print $2}') installed in $(( $(date +%s) - t2 ))s (total $(( $(date +%s) - t ))s)"
}

# Cheap, idempotent fix-ups that run even when the chroot was already there.
finalize_condor() {
  # The package expects systemd to create /run/condor.
  mkdir -p "$CHROOT/run/condor"
  # The schedd refuses jobs owned by root: tests claim this normal user.
  if ! grep -q '^nomadwn:' "$CHROOT/etc/passwd"; then
    in_chroot useradd --create-home --shell /bin/sh nomadwn
    log "condor: created job user 'nomadwn' in the chroot"
  fi
}

install_consul
install_promtool
install_condor
finalize_condor
log "done in $(( $(date +%s) - T0 ))s"
