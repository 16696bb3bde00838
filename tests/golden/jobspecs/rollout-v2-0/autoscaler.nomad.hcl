# The autoscaler service of site rollout-v2-0: rendered by nomadwn from the site file.
# Do not edit by hand: change the site file and run `nomadwn render`.
job "rollout-v2-0-autoscaler" {
  name        = "rollout-v2-0-autoscaler"
  type        = "service"
  region      = "global"
  namespace   = "ops"
  datacenters = ["*"]
  node_pool   = "default"
  priority    = 50

  meta {
    nomadwn_role = "autoscaler"
    nomadwn_site = "rollout-v2-0"
  }

  constraint {
    attribute = ""
    operator  = "distinct_hosts"
    value     = "true"
  }

  update {
    max_parallel      = 1
    stagger           = "30s"
    health_check      = "checks"
    min_healthy_time  = "10s"
    healthy_deadline  = "3m"
    progress_deadline = "10m"
    auto_revert       = true
    auto_promote      = false
    canary            = 0
  }

  group "autoscaler" {
    count = 2

    network {
      port "metrics" {
        to = 9120
      }
    }

    restart {
      attempts = 3
      interval = "5m"
      delay    = "15s"
      mode     = "delay"
    }

    reschedule {
      attempts       = 0
      interval       = "0s"
      delay          = "30s"
      delay_function = "exponential"
      max_delay      = "10m"
      unlimited      = true
    }

    ephemeral_disk {
      size = 300
    }

    task "autoscale" {
      driver = "docker"

      config {
        image = "example/nomadwn:1.0"
        force_pull = false
        image_pull_timeout = "5m"
        ports = ["metrics"]
        args = ["autoscale", "/secrets/site.yaml", "--metrics-address", "0.0.0.0:9120"]
      }

      env {
        CONSUL_HTTP_ADDR = "http://$${attr.unique.network.ip-address}:8500"
        NOMADWN_HOLDER = "$${NOMAD_ALLOC_ID}"
        NOMAD_ADDR = "http://$${attr.unique.network.ip-address}:4646"
        _CONDOR_COLLECTOR_HOST = "cm.example"
      }

      kill_signal    = "SIGTERM"
      kill_timeout   = "30s"
      shutdown_delay = "5s"

      resources {
        cpu        = 200
        memory     = 256
      }

      logs {
        max_files     = 5
        max_file_size = 10
      }

      consul {
      }

      identity {
        env         = true
        change_mode = "restart"
      }

      identity {
        name        = "consul_default"
        aud         = ["consul.io"]
        ttl         = "1h"
      }

      service {
        name     = "nomadwn-autoscaler"
        port     = "metrics"
        provider = "consul"
        tags     = ["metrics", "rollout-v2-0", "autoscaler"]

        meta {
          metrics_path = "/metrics"
          nomadwn_site = "rollout-v2-0"
        }

        check {
          name     = "autoscaler alive"
          type     = "http"
          path     = "/healthz"
          interval = "10s"
          timeout  = "2s"
        }
      }

      template {
        destination = "secrets/site.yaml"
        perms       = "0600"
        change_mode = "restart"
        data        = <<EOT
{{ with nomadVar "nomadwn/site/rollout" }}{{ .site_yaml }}{{ end }}
EOT
      }
    }
  }
}
