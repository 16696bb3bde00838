# Worker flavour vaulted of site kitchen: rendered by nomadwn from the site file.
# Do not edit by hand: change the site file and run `nomadwn render`.
job "kitchen-vaulted" {
  name        = "kitchen-vaulted"
  type        = "service"
  region      = "europe"
  namespace   = "grid"
  datacenters = ["dc1", "dc2"]
  node_pool   = "workers"
  priority    = 70

  meta {
    nomadwn_flavour = "vaulted"
    nomadwn_site = "kitchen"
    owner = "ops\tteam"
  }

  constraint {
    attribute = "$${meta.rack}"
    operator  = "regexp"
    value     = "^r[0-9]+$"
  }

  constraint {
    attribute = ""
    operator  = "distinct_hosts"
    value     = "true"
  }

  constraint {
    attribute = "$${attr.unique.hostname}"
    operator  = "is_set"
    value     = ""
  }

  spread {
    attribute = "$${node.datacenter}"
    weight    = 80
    target "dc1" {
      percent = 60
    }
    target "dc2" {
      percent = 40
    }
  }

  update {
    max_parallel      = 2
    stagger           = "30s"
    health_check      = "task_states"
    min_healthy_time  = "10s"
    healthy_deadline  = "5m"
    progress_deadline = "10m"
    auto_revert       = true
    auto_promote      = false
    canary            = 2
  }

  group "worker" {
    count = 3

    network {
      port "condor" {
        to = 9621
      }
      port "metrics" {
        to = 9100
      }
    }

    restart {
      attempts = 5
      interval = "1h"
      delay    = "1m"
      mode     = "delay"
    }

    reschedule {
      attempts       = 3
      interval       = "2h"
      delay          = "1m"
      delay_function = "fibonacci"
      max_delay      = "30m"
      unlimited      = false
    }

    ephemeral_disk {
      size = 512
    }

    scaling {
      enabled = true
      min     = 1
      max     = 9
    }

    task "condor" {
      driver = "docker"

      config {
        image = "example/worker@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
        force_pull = true
        image_pull_timeout = "10m"
        ports = ["condor", "metrics"]
        entrypoint = ["/bin/sh", "/local/nomadwn/start.sh"]

        mount {
          type = "bind"
          source = "local/nomadwn/99-nomadwn.conf"
          target = "/etc/condor/config.d/99-nomadwn.conf"
          readonly = true
        }

        mount {
          type = "bind"
          source = "/cvmfs"
          target = "/cvmfs"
          readonly = true
        }
      }

      env {
        GREETING = "say \"hi\" \\ $${NOMAD_ALLOC_ID} %%{if} {{ .x }}"
        UNICODE = "Grüße, naïve café ✓"
      }

      kill_signal    = "SIGQUIT"
      kill_timeout   = "50s"
      shutdown_delay = "5s"

      resources {
        cpu        = 4000
        memory     = 4096
        memory_max = 6144
      }

      logs {
        max_files     = 3
        max_file_size = 20
      }

      vault {
        role        = "condor-workers"
        change_mode = "noop"
      }

      identity {
        name        = "vault_default"
        aud         = ["vault.io"]
        ttl         = "1h"
      }

      service {
        name     = "condor-worker"
        port     = "metrics"
        provider = "consul"
        tags     = ["a \"quoted\" tag", "back\\slash", "$${not.interpolated}", "%%{ if x }", "unclosed $${ and %%{"]

        meta {
          site_note = "line1\nline2"
        }

        check {
          name     = "startd"
          type     = "script"
          command  = "/usr/local/bin/healthy"
          args     = ["--quiet"]
          interval = "30s"
          timeout  = "10s"
        }
      }

      service {
        name     = "condor-worker-metrics"
        port     = "metrics"
        provider = "consul"
        tags     = ["metrics", "kitchen", "vaulted"]

        meta {
          metrics_path = "/custom/metrics"
          nomadwn_flavour = "vaulted"
          nomadwn_site = "kitchen"
        }
      }

      template {
        destination = "local/nomadwn/99-nomadwn.conf"
        perms       = "0644"
        change_mode = "restart"
        data        = <<EOT
# Rendered by nomadwn for flavour vaulted of site kitchen; Nomad writes it at container start.

# --- pool
CONDOR_HOST = cm1.example
COLLECTOR_HOST = cm1.example:9618, cm2.example
DAEMON_LIST = MASTER, STARTD
USE_SHARED_PORT = True
SHARED_PORT_PORT = 9621
CCB_ADDRESS = ccb.example:9618

# --- resources: what Nomad reserved for this allocation, not the host's
NUM_CPUS = 4
MEMORY = 4096
DISK = 462848
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
STARTD_CRON_NOMADWNHEALTH_PERIOD = 30s
STARTD_CRON_NOMADWNHEALTH_RECONFIG_RERUN = True

# --- job policy
StartJobs = True
START = ($(StartJobs)) && (MY.NomadwnHealthy =?= True) && (TARGET.RequestCpus <= 4 && Owner =!= "bad\user") && (TARGET.AcctGroup =?= "group_atlas.prod")

# --- identity: match HTCondor slots to Nomad allocations
NomadAllocId = "$ENV(NOMAD_ALLOC_ID)"
NomadJobId = "$ENV(NOMAD_JOB_ID)"
NomadwnSite = "kitchen"
NomadwnFlavour = "vaulted"
STARTD_ATTRS = $(STARTD_ATTRS) StartJobs NomadAllocId NomadJobId NomadwnSite NomadwnFlavour

# --- lifespan and shutdown (nomadwn.model.ShutdownPlan explains every value)
UPDATE_INTERVAL = 60
MASTER_UPDATE_INTERVAL = 60
MAXJOBRETIREMENTTIME = 3960
MachineMaxVacateTime = 360
STARTD.SHUTDOWN_GRACEFUL_TIMEOUT = 3975
MASTER.SHUTDOWN_GRACEFUL_TIMEOUT = 35
STARTD_NOCLAIM_SHUTDOWN = 1800
MASTER.DAEMON_SHUTDOWN = STARTD_StartTime =?= 0

# --- pool authentication (the secret itself is rendered by Nomad into /secrets)
SEC_PASSWORD_FILE = /secrets/condor/pool_password

# --- site settings (htcondor.extra_config)
STARTD_DEBUG = D_FULLDEBUG
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
        destination = "secrets/condor/pool_password"
        perms       = "0600"
        change_mode = "signal"
        change_signal = "SIGHUP"
        data        = <<EOT
{{ with secret "kv/data/condor/pool" }}{{ .Data.data.pool_password | base64Decode }}{{ end }}
EOT
      }
    }
  }
}
