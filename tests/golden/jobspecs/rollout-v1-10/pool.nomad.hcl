# Worker flavour pool of site rollout-v1-10: rendered by nomadwn from the site file.
# Do not edit by hand: change the site file and run `nomadwn render`.
job "rollout-v1-10-pool" {
  name        = "rollout-v1-10-pool"
  type        = "service"
  region      = "global"
  namespace   = "grid"
  datacenters = ["*"]
  node_pool   = "default"
  priority    = 50

  meta {
    nomadwn_flavour = "pool"
    nomadwn_site = "rollout-v1-10"
  }

  update {
    max_parallel      = 2
    stagger           = "30s"
    health_check      = "checks"
    min_healthy_time  = "10s"
    healthy_deadline  = "5m"
    progress_deadline = "48h15m45s"
    auto_revert       = true
    auto_promote      = true
    canary            = 1
  }

  group "worker" {
    count = 2

    network {
      port "condor" {
        to = 9621
      }
    }

    volume "cvmfs" {
      type      = "host"
      source    = "cvmfs"
      read_only = true
    }

    restart {
      attempts = 2
      interval = "30m"
      delay    = "15s"
      mode     = "delay"
    }

    ephemeral_disk {
      size = 1024
    }

    scaling {
      enabled = true
      min     = 0
      max     = 10
    }

    task "condor" {
      driver = "docker"

      config {
        image = "example/worker:1.0"
        force_pull = false
        image_pull_timeout = "5m"
        ports = ["condor"]
        entrypoint = ["/bin/sh", "/local/nomadwn/start.sh"]

        mount {
          type = "bind"
          source = "local/nomadwn/99-nomadwn.conf"
          target = "/etc/condor/config.d/99-nomadwn.conf"
          readonly = true
        }
      }

      kill_signal    = "SIGTERM"
      kill_timeout   = "48h10m45s"
      shutdown_delay = "5s"

      resources {
        cores      = 8
        memory     = 16384
      }

      logs {
        max_files     = 10
        max_file_size = 10
      }

      volume_mount {
        volume           = "cvmfs"
        destination      = "/cvmfs"
        read_only        = true
        propagation_mode = "host-to-task"
      }

      vault {
        role        = "condor"
        change_mode = "noop"
      }

      identity {
        name        = "vault_default"
        aud         = ["vault.example"]
        ttl         = "1h"
      }

      service {
        name     = "condor-master"
        port     = "condor"
        provider = "consul"
        tags     = ["cntwn"]

        check {
          name     = "startd"
          type     = "script"
          command  = "/bin/sh"
          args     = ["/local/nomadwn/health.sh"]
          interval = "1m"
          timeout  = "1m"

          check_restart {
            limit           = 3
            grace           = "2m"
            ignore_warnings = true
          }
        }
      }

      template {
        destination = "local/nomadwn/99-nomadwn.conf"
        perms       = "0644"
        change_mode = "restart"
        data        = <<EOT
# Rendered by nomadwn for flavour pool of site rollout-v1-10; Nomad writes it at container start.

# --- pool
CONDOR_HOST = cm.example
COLLECTOR_HOST = cm.example
DAEMON_LIST = MASTER, STARTD
USE_SHARED_PORT = True
SHARED_PORT_PORT = 9621
CCB_ADDRESS = $(COLLECTOR_HOST)

# --- resources: what Nomad reserved for this allocation, not the host's
NUM_CPUS = 8
MEMORY = 16384
DISK = 946176
EXECUTE = $ENV(NOMAD_ALLOC_DIR)/condor/execute
NUM_SLOTS = 1
NUM_SLOTS_TYPE_1 = 1
SLOT_TYPE_1 = 100%
SLOT_TYPE_1_PARTITIONABLE = True

# --- unprivileged container: the container, not HTCondor, enforces limits
BASE_CGROUP =
DISCARD_SESSION_KEYRING_ON_STARTUP = FALSE
use POLICY : HOLD_IF_MEMORY_EXCEEDED

# --- health: a startd cron probe of CVMFS and the grid environment
STARTD_CRON_JOBLIST = $(STARTD_CRON_JOBLIST) NOMADWNHEALTH
STARTD_CRON_NOMADWNHEALTH_EXECUTABLE = $ENV(NOMAD_TASK_DIR)/nomadwn/probe.sh
STARTD_CRON_NOMADWNHEALTH_MODE = Periodic
STARTD_CRON_NOMADWNHEALTH_PERIOD = 60s
STARTD_CRON_NOMADWNHEALTH_RECONFIG_RERUN = True

# --- job policy
StartJobs = True
START = ($(StartJobs)) && (MY.NomadwnHealthy =?= True) && (True)
USER_JOB_WRAPPER = $ENV(NOMAD_TASK_DIR)/nomadwn/job-wrapper.sh

# --- identity: match HTCondor slots to Nomad allocations
NomadAllocId = "$ENV(NOMAD_ALLOC_ID)"
NomadJobId = "$ENV(NOMAD_JOB_ID)"
NomadwnSite = "rollout-v1-10"
NomadwnFlavour = "pool"
STARTD_ATTRS = $(STARTD_ATTRS) StartJobs NomadAllocId NomadJobId NomadwnSite NomadwnFlavour

# --- lifespan and shutdown (nomadwn.model.ShutdownPlan explains every value)
MAXJOBRETIREMENTTIME = 173400
MachineMaxVacateTime = 600
STARTD.SHUTDOWN_GRACEFUL_TIMEOUT = 173415
MASTER.SHUTDOWN_GRACEFUL_TIMEOUT = 173430

# --- pool authentication (the secret itself is rendered by Nomad into /secrets)
SEC_TOKEN_DIRECTORY = /secrets/condor/tokens.d
EOT
      }

      template {
        destination = "local/nomadwn/start.sh"
        perms       = "0755"
        change_mode = "restart"
        data        = <<EOT
#!/bin/sh
# Rendered by nomadwn: the worker container's start-up.
set -eu
sh "$${0%/*}/forward-logs.sh" "$$" &  # HTCondor daemon logs to stdout, until this script ends
# Job scratch in the allocation directory (the ephemeral disk Nomad reserved).
execute="$${NOMAD_ALLOC_DIR:-/alloc}/condor/execute"
mkdir -p "$execute"
chown condor:condor "$execute" 2>/dev/null || true
chmod 0755 "$execute"
NOMADWN_START_TIME=$(date +%s)
export NOMADWN_START_TIME
condor_master -f &
master=$!
for sig in TERM QUIT INT HUP; do
  trap "kill -$sig $master 2>/dev/null || true" "$sig"
done
status=0
wait "$master" || status=$?
# A trapped signal ends wait early; wait again until the master is really gone.
while kill -0 "$master" 2>/dev/null; do
  status=0
  wait "$master" || status=$?
done
if [ "$status" -eq 99 ]; then
  echo "nomadwn: the worker reached the end of its lifespan" >&2
  exit 0
fi
exit "$status"
EOT
      }

      template {
        destination = "local/nomadwn/probe.sh"
        perms       = "0755"
        change_mode = "restart"
        data        = <<EOT
#!/bin/sh
# Rendered by nomadwn: can this worker run a payload? (startd cron, ClassAd on stdout)
limit() { if command -v timeout >/dev/null 2>&1; then timeout 30 "$@"; else "$@"; fi; }
unfit() {
  echo "NomadwnHealthy = false"
  echo "NomadwnHealthReason = \"$1\""
  exit 0
}
limit ls /cvmfs/grid.cern.ch/ >/dev/null 2>&1 || unfit "CVMFS repository grid.cern.ch is not readable"
[ -r /cvmfs/grid.cern.ch/etc/profile.d/setup-cvmfs-ui.sh ] || unfit "the grid environment file is not readable"
limit sh -c '. "$1"' sh /cvmfs/grid.cern.ch/etc/profile.d/setup-cvmfs-ui.sh >/dev/null 2>&1 || unfit "loading the grid environment failed"
echo "NomadwnHealthy = true"
echo "NomadwnHealthReason = \"ok\""
EOT
      }

      template {
        destination = "local/nomadwn/health.sh"
        perms       = "0755"
        change_mode = "restart"
        data        = <<EOT
#!/bin/sh
# Rendered by nomadwn: the worker's Consul/Nomad health check.
if ! answer=$(condor_config_val -startd StartJobs 2>&1); then
  echo "critical: the startd does not answer: $answer"
  exit 2
fi
probe=$(sh "$${NOMAD_TASK_DIR:-/local}/nomadwn/probe.sh" 2>&1)
case "$probe" in
  *"NomadwnHealthy = true"*) ;;
  *) echo "warning: the startd answers but the worker is unfit: $probe"; exit 1 ;;
esac
echo "passing: the startd answers (StartJobs = $answer) and the probe passes"
EOT
      }

      template {
        destination = "local/nomadwn/forward-logs.sh"
        perms       = "0755"
        change_mode = "restart"
        data        = <<EOT
#!/bin/sh
# Rendered by nomadwn: forward HTCondor's daemon logs (master startd starter) to the task's stdout.
# At most 600 lines a minute (logs.forward_per_minute), cut at 512 bytes.
parent=$${1:-}
limit=600
width=512
say() { printf '[nomadwn] %s
' "$*"; }
paths=$(condor_config_val MASTER_LOG STARTD_LOG STARTER_LOG 2>/dev/null) || {
  say "log forwarding off: condor_config_val cannot read the HTCondor configuration"
  exit 0
}
state=$(mktemp -d "$${TMPDIR:-/tmp}/nomadwn-logs.XXXXXX") || exit 0
trap 'rm -rf "$state"' EXIT
trap 'exit 0' TERM INT HUP
window=$(date +%s)
used=0
dropped=0

# forward PREFIX FILE CAP: print FILE's complete new lines since the last call, while fewer than
# CAP lines went out this minute (the starters' CAP leaves a quarter for the master and startd).
forward() {
  [ -f "$2" ] || return 0
  key=$(printf '%s' "$2" | tr -c 'A-Za-z0-9' '_')
  # The file may go between the test and the reads (HTCondor's rotation): skip it this time.
  inode=$(ls -di "$2" 2>/dev/null | cut -d ' ' -f 1)
  size=$(wc -c 2>/dev/null <"$2") || return 0
  [ -n "$inode" ] || return 0
  old_inode=
  off=0
  if [ -f "$state/$key" ]; then read -r old_inode off <"$state/$key"; fi
  # Renamed away (a new file) or truncated: follow the new one from its start.
  if [ "$inode" != "$old_inode" ] || [ "$size" -lt "$off" ]; then off=0; fi
  [ "$size" -gt "$off" ] || { echo "$inode $off" >"$state/$key"; return 0; }
  tail -c "+$((off + 1))" "$2" 2>/dev/null | head -c "$((size - off))" >"$state/chunk"
  lines=$(wc -l <"$state/chunk")
  # Wait for a line's end, unless the unfinished line is already far too long.
  if [ "$lines" -eq 0 ]; then
    [ "$((size - off))" -gt 65536 ] || return 0
    echo >>"$state/chunk"
    lines=1
  fi
  echo "$inode $((off + $(head -n "$lines" "$state/chunk" | wc -c)))" >"$state/$key"
  room=$(($3 - used))
  [ "$room" -gt 0 ] || { dropped=$((dropped + lines)); return 0; }
  if [ "$lines" -gt "$room" ]; then dropped=$((dropped + lines - room)); lines=$room; fi
  used=$((used + lines))
  head -n "$lines" "$state/chunk" | cut -b "1-$width" | while IFS= read -r line; do
    printf '%s %s
' "$1" "$line"
  done
}

report() {
  [ "$dropped" -eq 0 ] ||
    say "$dropped HTCondor log lines not forwarded (limit $limit a minute); all are in $(dirname "$1") in the container"
}

pass() {
  set -- $paths
  forward "[master]" "$1" "$limit"
  shift
  forward "[startd]" "$1" "$limit"
  shift
  for f in "$1" "$1".*; do
    case $f in *.old | *'*') continue ;; esac
    suffix=$${f#"$1"}
    forward "[starter$${suffix}]" "$f" "$((limit - limit / 4))"
  done
  shift
}

while :; do
  pass
  now=$(date +%s)
  if [ "$((now - window))" -ge 60 ]; then
    report $paths
    window=$now
    used=0
    dropped=0
  fi
  if [ -n "$parent" ] && ! kill -0 "$parent" 2>/dev/null; then
    pass
    report $paths
    exit 0
  fi
  sleep 1
done
EOT
      }

      template {
        destination = "local/nomadwn/job-wrapper.sh"
        perms       = "0755"
        change_mode = "restart"
        data        = <<EOT
#!/bin/sh
# Rendered by nomadwn: the grid environment comes from CVMFS, not the image.
grid_env=/cvmfs/grid.cern.ch/etc/profile.d/setup-cvmfs-ui.sh
refuse() {
  why="nomadwn job wrapper: $1; the payload was not run on this worker"
  echo "$why" >&2
  if [ -n "$${_CONDOR_WRAPPER_ERROR_FILE:-}" ]; then echo "$why" >"$_CONDOR_WRAPPER_ERROR_FILE"; fi
  exit 97
}
[ -r "$grid_env" ] || refuse "the grid environment $grid_env is not readable (is CVMFS working?)"
. "$grid_env" || refuse "loading the grid environment $grid_env failed"
exec "$@"
EOT
      }

      template {
        destination = "secrets/condor/tokens.d/pool"
        perms       = "0600"
        change_mode = "noop"
        data        = <<EOT
{{ with secret "kv/data/condor" }}{{ .Data.data.token }}{{ end }}
EOT
      }
    }
  }
}
