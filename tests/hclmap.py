"""Read a rendered HCL jobspec back into Nomad's API JSON form, independently.

This is the other half of the HCL/JSON equivalence test. It shares no code with
the renderer: python-hcl2 parses the text, the string decoder below follows the
HCL native syntax spec (quoted-string escapes, heredocs, ``$${``/``%%{``), and the
mapping follows Nomad's jobspec2 conversion (``port`` -> ``PortLabel``, ``memory``
-> ``MemoryMB``, durations -> integer nanoseconds, ``port`` blocks with a static
value -> ``ReservedPorts`` ...).
"""

from __future__ import annotations

import re
from typing import Any

import hcl2
from hcl2.utils import SerializationOptions

_QUOTED_ESCAPE = re.compile(r'\\(["\\nrt]|u[0-9a-fA-F]{4}|U[0-9a-fA-F]{8})|([$%])\2\{')
_SIMPLE = {'"': '"', "\\": "\\", "n": "\n", "r": "\r", "t": "\t"}
# python-hcl2 8.1.4 rejects the HCL escapes $${ and %%{ unless a "}" follows them (it
# reads them as escaped interpolations), although the HCL spec makes each a literal on
# its own. hcl_to_api swaps them for private-use placeholders before parsing, and
# decode_string turns those into the literal ${ and %{ that HCL means.
_LITERAL_DOLLAR_BRACE = "\ue000"
_LITERAL_PERCENT_BRACE = "\ue001"
_GO_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_GO_UNITS = {"ns": 1, "us": 10**3, "µs": 10**3, "ms": 10**6, "s": 10**9, "m": 60 * 10**9, "h": 3600 * 10**9}


def _unescape(match: re.Match[str]) -> str:
    if match.group(2):
        return match.group(2) + "{"
    esc = match.group(1)
    if esc in _SIMPLE:
        return _SIMPLE[esc]
    return chr(int(esc[1:], 16))


def decode_string(raw: str) -> str:
    """A python-hcl2 raw string token (quoted literal or heredoc) as the string HCL means."""
    if not (raw.startswith('"') and raw.endswith('"')) or len(raw) < 2:
        raise ValueError(f"not a string token: {raw!r}")
    inner = raw[1:-1]
    if inner.startswith("<<"):
        header, _, rest = inner.partition("\n")
        marker = header[2:].lstrip("-")
        body, sep, last = rest.rpartition("\n")
        if last.strip() != marker:
            raise ValueError(f"heredoc does not end with its marker {marker!r}")
        text = body + "\n" if sep else ""
        # Heredocs take no backslash escapes, only the template ones.
        return _placeholders_back(re.sub(r"([$%])\1\{", r"\1{", text))
    return _placeholders_back(_QUOTED_ESCAPE.sub(_unescape, inner))


def _placeholders_back(text: str) -> str:
    return text.replace(_LITERAL_DOLLAR_BRACE, "${").replace(_LITERAL_PERCENT_BRACE, "%{")


def go_duration_ns(text: str) -> int:
    """Go's time.ParseDuration, as Nomad applies it to HCL duration strings."""
    pos, total = 0, 0.0
    for m in _GO_DURATION.finditer(text):
        assert m.start() == pos, f"bad duration {text!r}"
        total += float(m.group(1)) * _GO_UNITS[m.group(2)]
        pos = m.end()
    assert pos == len(text) and pos > 0, f"bad duration {text!r}"
    return round(total)


def _value(raw: Any) -> Any:
    if isinstance(raw, str):
        return decode_string(raw)
    if isinstance(raw, list):
        return [_value(v) for v in raw]
    if isinstance(raw, dict):
        return {
            (decode_string(k) if k.startswith('"') else k): _value(v) for k, v in raw.items() if k != "__is_block__"
        }
    return raw


def _blocks(body: dict[str, Any], name: str) -> list[dict[str, Any]]:
    found = body.get(name, [])
    assert isinstance(found, list)
    return [b for b in found if isinstance(b, dict) and b.get("__is_block__", True)]


def _one(body: dict[str, Any], name: str) -> dict[str, Any] | None:
    blocks = _blocks(body, name)
    assert len(blocks) <= 1, f"more than one {name} block"
    return blocks[0] if blocks else None


def _labelled(body: dict[str, Any], name: str) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for block in _blocks(body, name):
        ((label, inner),) = ((k, v) for k, v in block.items() if k != "__is_block__")
        out.append((decode_string(label), inner))
    return out


def _attrs(body: dict[str, Any]) -> dict[str, Any]:
    """The attributes of a block body (anything that is not a nested block), decoded."""
    return {
        k: _value(v)
        for k, v in body.items()
        if k != "__is_block__"
        and not (isinstance(v, list) and v and isinstance(v[0], dict) and v[0].get("__is_block__"))
    }


def _dur(attrs: dict[str, Any], key: str) -> int:
    return go_duration_ns(attrs[key])


def _check(body: dict[str, Any]) -> dict[str, Any]:
    a = _attrs(body)
    out: dict[str, Any] = {
        "Name": a["name"],
        "Type": a["type"],
        "Interval": _dur(a, "interval"),
        "Timeout": _dur(a, "timeout"),
    }
    for hcl_key, api_key in (("command", "Command"), ("args", "Args"), ("path", "Path")):
        if hcl_key in a:
            out[api_key] = a[hcl_key]
    cr = _one(body, "check_restart")
    if cr is not None:
        c = _attrs(cr)
        out["CheckRestart"] = {"Limit": c["limit"], "Grace": _dur(c, "grace"), "IgnoreWarnings": c["ignore_warnings"]}
    return out


def _service(body: dict[str, Any]) -> dict[str, Any]:
    a = _attrs(body)
    out: dict[str, Any] = {
        "Name": a["name"],
        "PortLabel": a["port"],
        "Provider": a["provider"],
        "Tags": a["tags"],
        "Checks": [_check(c) for c in _blocks(body, "check")],
    }
    meta = _one(body, "meta")
    if meta is not None:
        out["Meta"] = _attrs(meta)
    return out


def _task(name: str, body: dict[str, Any]) -> dict[str, Any]:
    a = _attrs(body)
    config_body = _one(body, "config")
    assert config_body is not None
    config = _attrs(config_body)
    mounts = [_attrs(m) for m in _blocks(config_body, "mount")]
    if mounts:
        config["mount"] = mounts
    res = _attrs(_one(body, "resources") or {})
    resources: dict[str, Any] = {"MemoryMB": res["memory"]}
    for hcl_key, api_key in (("cpu", "CPU"), ("cores", "Cores"), ("memory_max", "MemoryMaxMB")):
        if hcl_key in res:
            resources[api_key] = res[hcl_key]
    logs = _attrs(_one(body, "logs") or {})
    out: dict[str, Any] = {
        "Name": name,
        "Driver": a["driver"],
        "Config": config,
        "KillSignal": a["kill_signal"],
        "KillTimeout": _dur(a, "kill_timeout"),
        "Resources": resources,
        "LogConfig": {"MaxFiles": logs["max_files"], "MaxFileSizeMB": logs["max_file_size"]},
        "Services": [_service(s) for s in _blocks(body, "service")],
        "Templates": [
            {
                "DestPath": t["destination"],
                "EmbeddedTmpl": t["data"],
                "ChangeMode": t["change_mode"],
                **({"ChangeSignal": t["change_signal"]} if "change_signal" in t else {}),
                "Perms": t["perms"],
                **({"Envvars": t["env"]} if "env" in t else {}),
            }
            for t in (_attrs(b) for b in _blocks(body, "template"))
        ],
    }
    env = _one(body, "env")
    if env is not None:
        out["Env"] = _attrs(env)
    mounts_v = [_attrs(v) for v in _blocks(body, "volume_mount")]
    if mounts_v:
        out["VolumeMounts"] = [
            {
                "Volume": v["volume"],
                "Destination": v["destination"],
                "ReadOnly": v["read_only"],
                "PropagationMode": v["propagation_mode"],
            }
            for v in mounts_v
        ]
    if "shutdown_delay" in a:
        out["ShutdownDelay"] = _dur(a, "shutdown_delay")
    vault = _one(body, "vault")
    if vault is not None:
        v = _attrs(vault)
        out["Vault"] = {"ChangeMode": v["change_mode"], **({"Role": v["role"]} if "role" in v else {})}
    consul = _one(body, "consul")
    if consul is not None:
        out["Consul"] = {k.capitalize(): v for k, v in _attrs(consul).items()}
    # jobspec2 (parse_job.go) moves the unnamed/"default" identity to Task.Identity and
    # keeps the named ones in Task.Identities.
    identities = [_identity(_attrs(b)) for b in _blocks(body, "identity")]
    default = [i for i in identities if i.get("Name", "default") == "default"]
    named = [i for i in identities if i.get("Name", "default") != "default"]
    if default:
        out["Identity"] = default[0]
    if named:
        out["Identities"] = named
    return out


def _identity(a: dict[str, Any]) -> dict[str, Any]:
    keys = {"name": "Name", "aud": "Audience", "change_mode": "ChangeMode", "env": "Env", "file": "File"}
    unknown = set(a) - set(keys) - {"ttl"}
    assert not unknown, f"identity block: attributes this mapper does not know: {sorted(unknown)}"
    out = {api: a[key] for key, api in keys.items() if key in a}
    if "ttl" in a:
        out["TTL"] = _dur(a, "ttl")
    return out


def _group(name: str, body: dict[str, Any]) -> dict[str, Any]:
    a = _attrs(body)
    out: dict[str, Any] = {"Name": name}
    if "count" in a:
        out["Count"] = a["count"]
    networks = []
    for net in _blocks(body, "network"):
        reserved: list[dict[str, Any]] = []
        dynamic: list[dict[str, Any]] = []
        for label, port in _labelled(net, "port"):
            p = _attrs(port)
            entry: dict[str, Any] = {"Label": label}
            if "static" in p:
                entry["Value"] = p["static"]
            if "to" in p:
                entry["To"] = p["to"]
            # jobspec2 moves ports with a static value into ReservedPorts.
            (reserved if entry.get("Value", 0) > 0 else dynamic).append(entry)
        n: dict[str, Any] = {}
        if reserved:
            n["ReservedPorts"] = reserved
        if dynamic:
            n["DynamicPorts"] = dynamic
        networks.append(n)
    out["Networks"] = networks
    volumes = {
        label: {"Name": label, "Type": v["type"], "Source": v["source"], "ReadOnly": v["read_only"]}
        for label, v in ((lbl, _attrs(b)) for lbl, b in _labelled(body, "volume"))
    }
    if volumes:
        out["Volumes"] = volumes
    r = _attrs(_one(body, "restart") or {})
    out["RestartPolicy"] = {
        "Attempts": r["attempts"],
        "Interval": _dur(r, "interval"),
        "Delay": _dur(r, "delay"),
        "Mode": r["mode"],
    }
    rs = _one(body, "reschedule")
    if rs is not None:
        p = _attrs(rs)
        out["ReschedulePolicy"] = {
            "Attempts": p["attempts"],
            "Interval": _dur(p, "interval"),
            "Delay": _dur(p, "delay"),
            "DelayFunction": p["delay_function"],
            "MaxDelay": _dur(p, "max_delay"),
            "Unlimited": p["unlimited"],
        }
    disk = _attrs(_one(body, "ephemeral_disk") or {})
    out["EphemeralDisk"] = {"SizeMB": disk["size"]}
    scaling = _one(body, "scaling")
    if scaling is not None:
        s = _attrs(scaling)
        out["Scaling"] = {"Min": s["min"], "Max": s["max"], "Enabled": s["enabled"]}
    out["Tasks"] = [_task(n, b) for n, b in _labelled(body, "task")]
    return out


def hcl_to_api(text: str) -> dict[str, Any]:
    """Parse a rendered jobspec and return the ``{"Job": {...}}`` body Nomad would build from it."""
    assert _LITERAL_DOLLAR_BRACE not in text and _LITERAL_PERCENT_BRACE not in text
    text = text.replace("$${", _LITERAL_DOLLAR_BRACE).replace("%%{", _LITERAL_PERCENT_BRACE)
    doc = hcl2.loads(text, serialization_options=SerializationOptions(with_comments=False))
    ((job_id, body),) = _labelled(doc, "job")
    a = _attrs(body)
    job: dict[str, Any] = {
        "ID": job_id,
        "Name": a.get("name", job_id),
        "Type": a["type"],
        "Region": a["region"],
        "Namespace": a["namespace"],
        "Datacenters": a["datacenters"],
        "NodePool": a["node_pool"],
        "Priority": a["priority"],
    }
    meta = _one(body, "meta")
    if meta is not None:
        job["Meta"] = _attrs(meta)
    constraints = [
        {"LTarget": c["attribute"], "Operand": c["operator"], "RTarget": c["value"]}
        for c in (_attrs(b) for b in _blocks(body, "constraint"))
    ]
    if constraints:
        job["Constraints"] = constraints
    spreads = []
    for sp in _blocks(body, "spread"):
        s = _attrs(sp)
        entry: dict[str, Any] = {"Attribute": s["attribute"], "Weight": s["weight"]}
        targets = [{"Value": v, "Percent": _attrs(t)["percent"]} for v, t in _labelled(sp, "target")]
        if targets:
            entry["SpreadTarget"] = targets
        spreads.append(entry)
    if spreads:
        job["Spreads"] = spreads
    parameterized = _one(body, "parameterized")
    if parameterized is not None:
        pj = _attrs(parameterized)
        job["ParameterizedJob"] = {
            "Payload": pj["payload"],
            **({"MetaRequired": pj["meta_required"]} if "meta_required" in pj else {}),
            **({"MetaOptional": pj["meta_optional"]} if "meta_optional" in pj else {}),
        }
    update = _one(body, "update")
    if update is not None:
        u = _attrs(update)
        # api.UpdateStrategy: every field optional (Canonicalize fills the rest).
        durations = {
            "stagger": "Stagger",
            "min_healthy_time": "MinHealthyTime",
            "healthy_deadline": "HealthyDeadline",
            "progress_deadline": "ProgressDeadline",
        }
        plain = {
            "max_parallel": "MaxParallel",
            "health_check": "HealthCheck",
            "auto_revert": "AutoRevert",
            "auto_promote": "AutoPromote",
            "canary": "Canary",
        }
        unknown = set(u) - set(durations) - set(plain)
        assert not unknown, f"update block: attributes jobspec2 does not know: {sorted(unknown)}"
        job["Update"] = {
            **{api: _dur(u, key) for key, api in durations.items() if key in u},
            **{api: u[key] for key, api in plain.items() if key in u},
        }
    job["TaskGroups"] = [_group(n, b) for n, b in _labelled(body, "group")]
    return {"Job": job}
