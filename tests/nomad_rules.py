"""Nomad's own job rules that nomadwn's jobs touch, per version, as a checker for tests.

No Nomad binary runs here; the project's jobs are also checked with ``nomad job
validate`` of 1.10.5 and 2.0.5 outside these tests. This module re-states, from
Nomad's source at those tags, the validation errors and *warnings* a rendered job
could trigger, so a regression is caught here first:

* ``nomad/structs/structs.go``: ``Job.Warnings`` (2.0: services without a
  ``shutdown_delay``, ``generateTaskGroupServiceShutdownDelayWarnings``; auto_promote
  all or none), ``TaskGroup.Warnings`` (``MaxClientDisconnect``,
  ``StopAfterClientDisconnect``, ``PreventRescheduleOnLost`` deprecated and ignored,
  max_parallel > count), ``TaskGroup.Validate`` (no update block on batch, no
  reschedule/spread/affinity on system jobs), ``UpdateStrategy.Validate``;
* ``nomad/structs/workload_id.go``: ``WorkloadIdentity.Validate``/``Warnings``
  (no audience, no TTL on a named identity, ``env`` without ``change_mode = "restart"``,
  no TTL on the default identity);
* ``api/tasks.go`` ``Vault``: 1.10 has no ``Policies`` field any more (it would be
  dropped silently by the JSON decoder).

It works on the API JSON (``{"Job": {...}}``) before Nomad's canonicalisation; update
blocks are merged with ``api.DefaultUpdateStrategy`` the way ``Canonicalize`` does.
"""

from __future__ import annotations

import re
from typing import Any

_DEFAULT_UPDATE: dict[str, Any] = {  # api/jobs.go DefaultUpdateStrategy
    "Stagger": 30 * 10**9,
    "MaxParallel": 1,
    "HealthCheck": "checks",
    "MinHealthyTime": 10 * 10**9,
    "HealthyDeadline": 300 * 10**9,
    "ProgressDeadline": 600 * 10**9,
    "AutoRevert": False,
    "AutoPromote": False,
    "Canary": 0,
}
# api/tasks.go and api/jobs.go field names each version knows (the ones nomadwn could emit).
_REMOVED_IN_1_10 = {("Vault", "Policies"), ("Task", "VaultToken"), ("Job", "VaultToken"), ("Job", "ConsulToken")}
# consul-template functions that read Consul (1.10: they need the task's Consul token from workload identity).
_CONSUL_TEMPLATE = re.compile(
    r"\{\{-?\s*(?:with\s+|range\s+)?(key|keyExists|keyOrDefault|ls|safeLs|tree|safeTree|service|services|connect|caRoots|caLeaf)\b"
)
_DEPRECATED_GROUP = ("MaxClientDisconnect", "StopAfterClientDisconnect", "PreventRescheduleOnLost")


def check(body: dict[str, Any], version: str, *, oversubscription: bool = True) -> tuple[list[str], list[str]]:
    """``(errors, warnings)`` Nomad ``version`` ("1.10" or "2.0") would report for a job body.

    ``oversubscription``: whether the cluster's scheduler configuration enables memory
    oversubscription (``memoryOversubscriptionValidate`` warns about ``memory_max``
    otherwise; ``nomadwn validate`` notes it per flavour).
    """
    job = body["Job"]
    errors: list[str] = []
    warnings: list[str] = []
    kind = job["Type"]
    job_update = job.get("Update")
    if job_update is None and kind in (("service", "system") if version >= "2.0" else ("service",)):
        job_update = {}  # Canonicalize gives it DefaultUpdateStrategy (system too from 1.11)
    for key in ("VaultToken", "ConsulToken"):
        if key in job:
            errors.append(f"job field {key} does not exist in Nomad {version} (legacy token workflow)")
    for tg in job["TaskGroups"]:
        name = tg["Name"]
        update = (
            None
            if job_update is None and tg.get("Update") is None
            else {
                **_DEFAULT_UPDATE,
                **(job_update or {}),
                **(tg.get("Update") or {}),
            }
        )
        if update is not None:
            if kind not in ("service", "system"):
                errors.append(f'group {name}: Job type "{kind}" does not allow update block')
            errors += _update_errors(update)
            count = tg.get("Count", 1)
            if count > 1 and update["MaxParallel"] > count:
                warnings.append(f"group {name}: Update max parallel count is greater than task group count")
        if kind == "system":
            for block, words in (
                ("ReschedulePolicy", "reschedule policy"),
                ("Spreads", "spread"),
                ("Affinities", "affinity"),
            ):
                if tg.get(block):
                    errors.append(f"group {name}: System jobs may not have a {words} block")
        for field in _DEPRECATED_GROUP:
            if tg.get(field):
                warnings.append(f"group {name}: {field} is deprecated and ignored")
        warnings += _shutdown_delay_warnings(tg) if version >= "2.0" else []
        for task in tg["Tasks"]:
            where = f"task {name}.{task['Name']}"
            if not oversubscription and (task.get("Resources") or {}).get("MemoryMaxMB"):
                warnings.append(f"{where}: Memory oversubscription is not enabled; memory_max value will be ignored")
            vault = task.get("Vault")
            if vault is not None and "Policies" in vault and version >= "1.10":
                errors.append(f"{where}: vault.policies was removed in Nomad 1.10 (use a role)")
            if "VaultToken" in task:
                errors.append(f"{where}: VaultToken does not exist in Nomad {version}")
            identities = ([task["Identity"]] if task.get("Identity") else []) + list(task.get("Identities") or [])
            for wid in identities:
                e, w = _identity(wid)
                errors += [f"{where}: identity {wid.get('Name', 'default')}: {x}" for x in e]
                warnings += [f"{where}: identity {wid.get('Name', 'default')}: {x}" for x in w]
            reads_consul = any(
                _CONSUL_TEMPLATE.search(t.get("EmbeddedTmpl") or "") for t in task.get("Templates") or []
            )
            has_consul_identity = task.get("Consul") is not None or any(
                str(i.get("Name", "")).startswith("consul_") for i in identities
            )
            if reads_consul and not has_consul_identity:
                errors.append(f"{where}: a template reads Consul but the task has no consul block or consul_ identity")
            if vault is not None and not any(i.get("Name") == "vault_default" for i in identities):
                warnings.append(f"{where}: a vault block but no vault_default identity (needs server default_identity)")
    return errors, warnings


def _update_errors(u: dict[str, Any]) -> list[str]:
    """``structs.UpdateStrategy.Validate``."""
    out = []
    if u["HealthCheck"] not in ("checks", "task_states", "manual"):
        out.append(f"Invalid health check given: {u['HealthCheck']!r}")
    if u["MaxParallel"] < 0 or u["Canary"] < 0:
        out.append("max_parallel and canary must not be negative")
    if u["Canary"] == 0 and u["AutoPromote"]:
        out.append("Auto Promote requires a Canary count greater than zero")
    if u["HealthyDeadline"] <= 0:
        out.append("Healthy deadline must be greater than zero")
    if u["MinHealthyTime"] >= u["HealthyDeadline"]:
        out.append("Minimum healthy time must be less than healthy deadline")
    if u["ProgressDeadline"] != 0 and u["HealthyDeadline"] >= u["ProgressDeadline"]:
        out.append("Healthy deadline must be less than progress deadline")
    if u["Stagger"] <= 0:
        out.append("Stagger must be greater than zero")
    return out


def _shutdown_delay_warnings(tg: dict[str, Any]) -> list[str]:
    """``generateTaskGroupServiceShutdownDelayWarnings`` (Nomad 2.0)."""
    out = []
    group_delay = (tg.get("ShutdownDelay") or 0) > 0
    unscoped_group_service = any(not s.get("TaskName") for s in tg.get("Services") or [])
    any_task_delay = False
    for task in tg["Tasks"]:
        if (task.get("ShutdownDelay") or 0) > 0:
            any_task_delay = True
        elif task.get("Services"):
            out.append(f"task {task['Name']!r} in group {tg['Name']!r} defines services, but has no shutdown_delay set")
    if unscoped_group_service and not group_delay and not any_task_delay:
        out.append(
            f"group {tg['Name']!r} defines services, but neither the group nor any of its tasks have shutdown_delay set"
        )
    return out


def _identity(wid: dict[str, Any]) -> tuple[list[str], list[str]]:
    """``WorkloadIdentity.Validate`` and ``Warnings`` after ``Canonicalize`` (default audience nomadproject.io)."""
    errors, warnings = [], []
    name = wid.get("Name") or "default"
    audience = ["nomadproject.io"] if name == "default" else list(wid.get("Audience") or [])
    mode = wid.get("ChangeMode") or ""
    if mode not in ("", "noop", "restart", "signal"):
        errors.append(f"invalid change_mode: {mode}")
    if (wid.get("TTL") or 0) > 0 and name == "default":
        errors.append("ttl for default identity not yet supported")
    if not audience:
        warnings.append("identities without an audience are insecure")
    elif len(audience) > 1:
        warnings.append("it is more secure to use 1 audience per identity")
    if name != "default" and not wid.get("TTL"):
        warnings.append("identities without an expiration are insecure")
    if wid.get("Env") and mode != "restart":
        warnings.append('using env=true without change_mode="restart" may result in task not getting updated identity')
    return errors, warnings
