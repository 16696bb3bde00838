# Nomad ACL policy of the nomadwn autoscaler of site rollout-v2-0 (job rollout-v2-0-autoscaler).
# Rendered by nomadwn: attach it to the job, whose tasks then get it through their workload identity.
namespace "grid" {
  capabilities = ["list-jobs", "read-job", "scale-job", "dispatch-job"]
}

namespace "ops" {
  variables {
    path "nomadwn/site/rollout" {
      capabilities = ["read"]
    }
  }
}
