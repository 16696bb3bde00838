# Nomad ACL policy of the nomadwn autoscaler of site glasgow (job glasgow-autoscaler).
# Rendered by nomadwn: attach it to the job, whose tasks then get it through their workload identity.
namespace "default" {
  capabilities = ["list-jobs", "read-job", "scale-job", "dispatch-job"]
}
