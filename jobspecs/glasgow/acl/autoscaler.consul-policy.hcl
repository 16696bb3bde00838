# Consul ACL policy of the nomadwn autoscaler of site glasgow: its leader lock.
# Rendered by nomadwn: bind it to the Consul role that Nomad's workload logins for this job get.
session_prefix "" {
  policy = "write"
}

key_prefix "nomadwn/glasgow/autoscaler/leader" {
  policy = "write"
}
