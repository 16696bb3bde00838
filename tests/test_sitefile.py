"""Validation of site files: each bad file gets one clear error naming the field."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from nomadwn.errors import ConfigError
from nomadwn.sitefile import load_site, merge, parse_site

Mutate = Callable[[dict[str, Any]], None]


def _set(path: str, value: Any) -> Mutate:
    def mutate(data: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node = data
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value

    return mutate


def _drop(path: str) -> Mutate:
    def mutate(data: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node = data
        for part in parents:
            node = node[part]
        del node[last]

    return mutate


def _rename_flavour(old: str, new: str) -> Mutate:
    def mutate(data: dict[str, Any]) -> None:
        data["flavours"][new] = data["flavours"].pop(old)

    return mutate


CASES: list[tuple[str, Mutate, list[str]]] = [
    (
        "unknown-key",
        _set("flavours.cntwn.imgae", {}),
        [
            "flavours.cntwn.imgae: unknown key; check the spelling against the configuration reference "
            "(nomadwn init writes an example)"
        ],
    ),
    (
        "unknown-key-in-defaults",
        _set("defaults.htcondor.colector", ["cm"]),
        [
            "defaults.htcondor.colector (used by flavours cntwn, elastic, ephemeral, burst): unknown key; check the "
            "spelling against the configuration reference (nomadwn init writes an example)"
        ],
    ),
    (
        "wrong-type",
        _set("flavours.elastic.count", "four"),
        ["flavours.elastic.count: Input should be a valid integer, unable to parse string as an integer (got str)"],
    ),
    (
        "size-without-unit",
        _set("flavours.ephemeral.resources.memory", 8192),
        ["flavours.ephemeral.resources.memory: a size needs a unit: write it as a string such as 512MB, 16GB or 16GiB"],
    ),
    (
        "duration-without-unit",
        _set("flavours.cntwn.health", {"interval": 60}),
        ["flavours.cntwn.health.interval: a duration needs a unit: write it as a string such as 60s, 5m or 1h30m"],
    ),
    (
        "secret-inline-token",
        _set(
            "flavours.cntwn.env", {"CONDOR_TOKEN_HINT": "x", "X": "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl"}
        ),
        [
            "flavours.cntwn.env.CONDOR_TOKEN_HINT: looks like an inline secret; put it in a Nomad Variable or Vault "
            "and reference it with pool_auth",
            "flavours.cntwn.env.X: contains a token or private key; secrets never go in a site file: store it in a "
            "Nomad Variable or Vault and reference it with pool_auth",
        ],
    ),
    (
        "secret-inline-password",
        _set("defaults.pool_auth.password", "hunter2"),
        [
            "defaults.pool_auth.password: looks like an inline secret; put it in a Nomad Variable or Vault "
            "and reference it with pool_auth"
        ],
    ),
    (
        "batch-with-update",
        _set("flavours.ephemeral.update", {"max_parallel": 1}),
        [
            "flavours.ephemeral.update: a batch job may not have an update block (Nomad rejects it); "
            "remove it or set it to null"
        ],
    ),
    (
        "port-label-missing",
        _set("flavours.cntwn.service", {"port": "http"}),
        ["flavours.cntwn.service.port: no port labelled 'http' in the group network; use one of: condor"],
    ),
    (
        "latest-tag",
        _set("flavours.cntwn.image", {"tag": "latest"}),
        [
            "flavours.cntwn.image.tag: 'latest' is not a pinned version; set a version tag or digest, "
            "or allow_latest: true to force it"
        ],
    ),
    (
        "system-with-scaling",
        _set("flavours.cntwn.scaling", {"max": 3}),
        [
            "flavours.cntwn.scaling: a system job runs one worker per node and cannot be scaled; "
            "remove it or use kind: service"
        ],
    ),
    (
        "kill-timeout-over-client-cap",
        _set("flavours.elastic.lifespan.kill_timeout", "50h"),
        [
            "flavours.elastic.lifespan.kill_timeout: Nomad silently caps it at the clients' max_kill_timeout (49h); "
            "lower it, or raise nomad.max_kill_timeout if your clients allow more"
        ],
    ),
    (
        "fuse-without-repositories",
        _drop("flavours.ephemeral.cvmfs.repositories"),
        [
            "flavours.ephemeral.cvmfs.repositories: fuse mode mounts only the repositories listed here; "
            "name at least one (such as grid.cern.ch)"
        ],
    ),
    (
        "missing-required",
        _drop("defaults.htcondor"),
        [
            "flavours.cntwn.htcondor: required, but missing",
            "flavours.elastic.htcondor: required, but missing",
            "flavours.ephemeral.htcondor.collector: required, but missing",  # it has its own htcondor block
            "flavours.burst.htcondor: required, but missing",
        ],
    ),
    (
        "bad-site-name",
        _set("name", "Glasgow_T2"),
        ["name: use lower-case letters, digits and '-', start and end with a letter or digit, at most 63 characters"],
    ),
    (
        "batch-without-lifespan",
        _set("flavours.ephemeral.lifespan", None),
        ["flavours.ephemeral.lifespan: Input should be a valid dictionary or instance of Lifespan (got null)"],
    ),
    (
        "system-with-spread",
        _set("flavours.cntwn.placement", {"spreads": [{"attribute": "${node.datacenter}"}]}),
        ["flavours.cntwn.placement.spreads: Nomad does not allow spread on system jobs; remove it"],
    ),
    (
        "restart-attempts-ambiguous",
        _set("flavours.ephemeral.restart.mode", "delay"),
        ["flavours.ephemeral.restart.mode: with attempts: 0 the mode must be fail (Nomad calls delay ambiguous)"],
    ),
    (
        "consul-reserved-meta-key",
        _set("flavours.cntwn.service", {"meta": {"consul-owner": "ops"}}),
        ["flavours.cntwn.service.meta.consul-owner: Consul reserves keys starting with 'consul-'; rename it"],
    ),
    (
        "consul-meta-value-too-long",
        _set("flavours.cntwn.service", {"meta": {"note": "x" * 513}}),
        ["flavours.cntwn.service.meta.note: Consul allows at most 512 characters in a meta value"],
    ),
    (
        "consul-too-many-meta-pairs",
        _set("flavours.elastic.service.meta", {f"k{i}": "v" for i in range(65)}),
        ["flavours.elastic.service.meta: Consul allows at most 64 meta pairs; this service would have 65"],
    ),
    (
        "autoscale-without-scaling",
        _set("flavours.ephemeral.autoscale", {"ramp": 2}),
        [
            "flavours.ephemeral.autoscale: needs a scaling block: its min and max bound what the autoscaler may set",
            "flavours.ephemeral.count: an autoscaled batch flavour is dispatched one worker per job; "
            "set count to 1 or remove it",
        ],
    ),
    (
        "autoscale-system",
        _set("flavours.cntwn.autoscale", {"ramp": 2}),
        [
            "flavours.cntwn.autoscale: needs a scaling block: its min and max bound what the autoscaler may set",
            "flavours.cntwn.autoscale: a system job runs one worker per node and cannot be autoscaled; "
            "use kind: service or batch",
        ],
    ),
    (
        "autoscaled-flavours-in-two-pools",
        _set("flavours.burst.htcondor", {"collector": ["other-cm.example:9618"]}),
        ["flavours.burst.htcondor.collector: autoscaled flavours must share one pool: use flavour elastic's collector"],
    ),
    (
        "flavour-named-autoscaler",
        _rename_flavour("burst", "autoscaler"),
        ["flavours.autoscaler.kind: the name 'autoscaler' is taken by the site's autoscaler job; rename this flavour"],
    ),
    (
        "autoscaler-lock-limits",
        _set("autoscaler.lock_ttl", "10s"),
        ["autoscaler.lock_ttl: must be 20s to 48h: Consul's session TTL (half of it) must be at least 10s"],
    ),
    (
        "autoscaler-lock-delay-limit",
        _set("autoscaler.lock_delay", "2m"),
        ["autoscaler.lock_delay: must be at most 60s (Consul's limit)"],
    ),
    *[
        (
            f"autoscaler-schedds-{name}",
            _set("autoscaler.schedds", value),
            [
                "autoscaler.schedds: write how many schedds must answer (a whole number, at least 1) "
                "or a list of their names"
            ],
        )
        for name, value in [("zero", 0), ("empty-name", [""]), ("boolean", True), ("empty-list", []), ("text", "two")]
    ],
    (
        "autoscaler-image-unpinned",
        _drop("autoscaler.image.repository"),
        ["autoscaler.image.repository: required, but missing"],
    ),
    (
        "autoscale-stale-before-evaluated",
        _set("flavours.elastic.autoscale", {"evaluation_interval": "5m", "stale_after": "1m"}),
        ["flavours.elastic.autoscale.stale_after: must be at least evaluation_interval, or every observation is stale"],
    ),
    (
        "unknown-top-level",
        _set("flavors", {}),
        ["flavors: unknown top-level key; use name, nomad, autoscaler, monitoring, defaults, flavours"],
    ),
]


@pytest.mark.parametrize(("mutate", "expected"), [(m, e) for _, m, e in CASES], ids=[c[0] for c in CASES])
def test_bad_site_files_name_the_field(example_data: dict[str, Any], mutate: Mutate, expected: list[str]) -> None:
    mutate(example_data)
    with pytest.raises(ConfigError) as caught:
        parse_site(example_data, "site.yaml")
    assert [str(p) for p in caught.value.problems] == expected
    assert str(caught.value).splitlines()[0] == f"site.yaml: {len(expected)} problem(s) in the site file"


@pytest.mark.parametrize(
    "secret",
    ["hunter2-pool-password", "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl", "-----BEGIN PRIVATE KEY-----"],
    ids=["password", "jwt", "pem"],
)
@pytest.mark.parametrize(
    "where",
    ["image.tag", "htcondor.start", "service.name", "placement.node_pool", "resources.memory", "env.API_TOKEN"],
)
def test_errors_never_echo_a_secret(example_data: dict[str, Any], secret: str, where: str) -> None:
    """A token or key is refused in any field; whatever is refused, the message does not repeat it.

    A plain password cannot be told from a legitimate tag or name, so it may pass;
    if it is refused for another reason, the error still must not show it.
    """
    _set(f"flavours.cntwn.{where}", secret)(example_data)
    try:
        parse_site(example_data, "site.yaml")
    except ConfigError as exc:
        assert secret not in str(exc)
    else:
        assert secret == "hunter2-pool-password"


def test_secret_like_key_with_a_path_is_allowed(example_data: dict[str, Any]) -> None:
    _set("flavours.cntwn.htcondor.extra_config", {"SEC_TOKEN_DIRECTORY": "/etc/condor/tokens.d"})(example_data)
    site = parse_site(example_data)
    assert site.flavours["cntwn"].htcondor.extra_config == {"SEC_TOKEN_DIRECTORY": "/etc/condor/tokens.d"}


def test_defaults_merge_and_flavour_override(example_data: dict[str, Any]) -> None:
    site = parse_site(example_data)
    assert site.flavours["cntwn"].resources.cores == 8
    assert site.flavours["ephemeral"].resources.cores == 4
    assert site.flavours["ephemeral"].resources.disk == 20 * 1024  # inherited from defaults
    assert site.flavours["elastic"].service.tags == ["cntwn", "elastic"]  # lists replace, not append
    assert site.flavours["ephemeral"].cvmfs.host_volume == "cvmfs"  # fuse replaced the bind default whole


def test_merge_rules() -> None:
    assert merge({"a": {"b": 1, "c": 2}}, {"a": {"c": 3}}) == {"a": {"b": 1, "c": 3}}
    assert merge({"a": [1, 2]}, {"a": [3]}) == {"a": [3]}
    assert merge({"m": {"mode": "bind", "x": 1}}, {"m": {"mode": "fuse"}}) == {"m": {"mode": "fuse"}}
    assert merge({"a": {"b": 1}}, {"a": None}) == {"a": None}


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file; nomadwn init PATH writes an example site file"):
        load_site(tmp_path / "nope.yaml")


def test_duplicate_yaml_keys_are_an_error(tmp_path: Path) -> None:
    path = tmp_path / "dup.yaml"
    path.write_text("name: a\nname: b\nflavours: {}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"line 2, column 1: duplicate key 'name'"):
        load_site(path)


def test_invalid_yaml(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("name: [unclosed\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"bad\.yaml: 1 problem"):
        load_site(path)


def test_example_site_is_valid() -> None:
    site = load_site(Path(__file__).resolve().parent.parent / "examples" / "glasgow.yaml")
    assert list(site.flavours) == ["cntwn", "elastic", "ephemeral", "burst"]
    assert [f.kind for f in site.flavours.values()] == ["system", "service", "batch", "batch"]
