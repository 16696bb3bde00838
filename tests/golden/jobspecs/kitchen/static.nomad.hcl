# Worker flavour static of site kitchen: rendered by nomadwn from the site file.
# Do not edit by hand: change the site file and run `nomadwn render`.
job "custom-static-job" {
  name        = "custom-static-job"
  type        = "system"
  region      = "global"
  namespace   = "default"
  datacenters = ["*"]
  node_pool   = "default"
  priority    = 50

  meta {
    nomadwn_flavour = "static"
    nomadwn_site = "kitchen"
    owner = "ops\tteam"
  }

  group "worker" {
    network {
      port "condor" {
        static = 9621
        to     = 9621
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
      mode     = "fail"
    }

    ephemeral_disk {
      size = 512
    }

    task "condor" {
      driver = "docker"

      config {
        image = "example/worker@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
        force_pull = true
        image_pull_timeout = "10m"
        ports = ["condor"]
        entrypoint = ["/bin/sh", "/local/nomadwn/start.sh"]

        mount {
          type = "bind"
          source = "local/nomadwn/99-nomadwn.conf"
          target = "/etc/condor/config.d/99-nomadwn.conf"
          readonly = true
        }
      }

      env {
        GREETING = "say \"hi\" \\ $${NOMAD_ALLOC_ID} %%{if} {{ .x }}"
        UNICODE = "Grüße, naïve café ✓"
      }

      kill_signal  = "SIGTERM"
      kill_timeout = "30s"
      shutdown_delay = "5s"

      resources {
        cores      = 2
        memory     = 3072
        memory_max = 6144
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

      service {
        name     = "condor-master"
        port     = "condor"
        provider = "consul"
        tags     = ["cntwn"]

        check {
          name     = "startd"
          type     = "script"
          command  = "condor_config_val"
          args     = ["-startd", "StartJobs"]
          interval = "1m"
          timeout  = "1m"

          check_restart {
            limit           = 3
            grace           = "2m"
            ignore_warnings = false
          }
        }
      }

      template {
        destination = "local/nomadwn/99-nomadwn.conf"
        perms       = "0644"
        change_mode = "restart"
        data        = <<EOT
# Rendered by nomadwn for flavour static of site kitchen; Nomad writes it at container start.

# --- pool
CONDOR_HOST = cm1.example
COLLECTOR_HOST = cm1.example
DAEMON_LIST = MASTER, STARTD
USE_SHARED_PORT = True
SHARED_PORT_PORT = 9621

# --- resources: the container's share, not the host's
NUM_CPUS = 2
MEMORY = 2048
DISK = 104857600

# --- unprivileged container: the container, not HTCondor, enforces limits
BASE_CGROUP =
DISCARD_SESSION_KEYRING_ON_STARTUP = FALSE

# --- job policy
StartJobs = True
START = ($(StartJobs)) && (TARGET.RequestCpus <= 4 && Owner =!= "bad\user") && (TARGET.AcctGroup =?= "group_atlas.prod")

# --- identity: match HTCondor slots to Nomad allocations
NomadAllocId = "$ENV(NOMAD_ALLOC_ID)"
NomadJobId = "$ENV(NOMAD_JOB_ID)"
NomadwnSite = "kitchen"
NomadwnFlavour = "static"
STARTD_ATTRS = $(STARTD_ATTRS) NomadAllocId NomadJobId NomadwnSite NomadwnFlavour

# --- lifespan and shutdown
MASTER.SHUTDOWN_GRACEFUL_TIMEOUT = 25

# --- pool authentication (the secret itself is rendered by Nomad into /secrets)
SEC_TOKEN_DIRECTORY = /secrets/condor/tokens.d

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
        destination = "secrets/condor/tokens.d/pool"
        perms       = "0600"
        change_mode = "restart"
        data        = <<EOT
{{ with nomadVar "nomad/jobs/custom-static-job/worker" }}{{ .token }}{{ end }}
EOT
      }
    }
  }
}
