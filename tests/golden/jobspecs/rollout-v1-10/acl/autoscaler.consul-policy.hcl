# Consul ACL policy of the nomadwn autoscaler of site rollout-v1-10: its leader lock.
# Rendered by nomadwn: bind it to the Consul role that Nomad's workload logins for this job get.
session_prefix "" {
  policy = "write"
}

key_prefix "nomadwn/rollout-v1-10/autoscaler/leader" {
  policy = "write"
}
