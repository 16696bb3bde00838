"""Input that cannot hurt nomadwn: hostile site files and environment settings end in one clear error.

Every case goes through ``load_site`` (and, for a few, the CLI): the error names the
line (site files) or the variable (environment), and nothing raises anything but a
:class:`~nomadwn.errors.ConfigError`. Memory is bounded too: the alias bomb is refused
before anything is built from it.
"""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import pytest
from typer.testing import CliRunner

from nomadwn.condor import CondorSettings
from nomadwn.consul_settings import ConsulSettings
from nomadwn.errors import ConfigError
from nomadwn.nomad import NomadSettings
from nomadwn.sitefile import MAX_BYTES, load_site
from typer_cli import app

# 9 levels of 9 aliases each: 9**9 (387 million) strings once expanded.
ALIAS_BOMB = "".join(
    [
        'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n',
        *(f"{n}: &{n} [{','.join([f'*{p}'] * 9)}]\n" for p, n in zip("abcdefgh", "bcdefghi", strict=True)),
    ]
)
ALIASES = (
    "YAML aliases (*{}) are not allowed in a site file: write the value out,"
    " or put settings shared by flavours under defaults"
)


def _write(tmp_path: Path, content: str | bytes) -> Path:
    path = tmp_path / "site.yaml"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


HOSTILE: list[tuple[str, str | bytes, str]] = [
    ("alias-bomb", ALIAS_BOMB, "line 2, column 8: " + ALIASES.format("a")),
    ("self-alias", "name: x\nflavours: &f\n  a: *f\n", "line 3, column 6: " + ALIASES.format("f")),
    (
        "merge-key",
        "name: x\nd: &d {kind: batch}\nflavours:\n  a:\n    <<: *d\n",
        "line 5, column 9: " + ALIASES.format("d"),
    ),
    (
        "deep-flow",
        "name: x\nflavours: " + "[" * 500 + "]" * 500 + "\n",
        "line 2, column 42: nested more than 32 levels deep; a site file needs far fewer",
    ),
    (
        "deep-block",
        "flavours:\n" + "".join("  " * (i + 1) + f"k{i}:\n" for i in range(40)),
        "line 33, column 65: nested more than 32 levels deep; a site file needs far fewer",
    ),
    ("binary", bytes(range(256)), "line 2: not UTF-8 text (byte 128); save the file as UTF-8"),
    ("invalid-utf8", b"name: x\nflavours:\n  a: \xff\n", "line 3: not UTF-8 text (byte 23); save the file as UTF-8"),
    ("nul", b"name: x\x00\n", "line 1: control characters are not allowed"),
    (
        "huge-integer",
        "name: x\nflavours:\n  a:\n    count: " + "9" * 5000 + "\n",
        "line 4, column 12: cannot read this value"
        " (Exceeds the limit (4300 digits) for integer string conversion: value has 5000 digits)",
    ),
    ("bad-date", "name: 2001-13-45\n", "line 1, column 7: cannot read this value (month must be in 1..12)"),
    (
        "python-object",
        "name: !!python/object/apply:os.system ['true']\n",
        "line 1, column 7: could not determine a constructor for the tag"
        " 'tag:yaml.org,2002:python/object/apply:os.system'",
    ),
    ("unknown-tag", "name: !vault x\n", "line 1, column 7: could not determine a constructor for the tag '!vault'"),
    ("unhashable-key", "? [a, b]\n: x\n", "line 1, column 3: found unhashable key"),
    ("too-big", "#" * (MAX_BYTES + 1), "larger than 1 MiB, the limit for a site file"),
    ("not-a-mapping", "- a\n- b\n", "the site file must be a mapping with name, defaults and flavours"),
    (
        "too-many-values",
        "name: x\nflavours: [" + "1, " * 50_001 + "]\n",
        # node 50,001: the root mapping, name, x, flavours and the sequence are the first five
        f"line 2, column {len('flavours: [') + 1 + 3 * (50_001 - 6)}: more than 50,000 values in a site file;"
        " a real site has a few thousand",
    ),
    (
        "too-many-flavours",
        "name: x\nflavours:\n" + "".join(f"  f{i}: {{}}\n" for i in range(1001)),
        "flavours: at most 1000 flavours in a site file, not 1001",
    ),
    ("empty", "", "the site file must be a mapping with name, defaults and flavours"),
]


@pytest.mark.parametrize(("content", "problem"), [(c, p) for _, c, p in HOSTILE], ids=[i for i, _, _ in HOSTILE])
def test_hostile_site_file_gets_one_clear_error(tmp_path: Path, content: str | bytes, problem: str) -> None:
    path = _write(tmp_path, content)
    with pytest.raises(ConfigError) as caught:
        load_site(path)
    assert str(caught.value) == f"{path}: 1 problem(s) in the site file\n  {problem}"


def test_a_long_list_of_problems_is_cut_in_the_message_not_in_the_error(tmp_path: Path) -> None:
    path = _write(tmp_path, "".join(f"k{i}: 1\n" for i in range(60)))
    with pytest.raises(ConfigError) as caught:
        load_site(path)
    lines = str(caught.value).splitlines()
    assert lines[0] == f"{path}: 61 problem(s) in the site file"
    assert lines[1:3] == [
        "  k0: unknown top-level key; use name, nomad, autoscaler, monitoring, defaults, flavours",
        "  k1: unknown top-level key; use name, nomad, autoscaler, monitoring, defaults, flavours",
    ]
    assert lines[51:] == ["  ... and 11 more"]
    assert len(caught.value.problems) == 61


def test_alias_bomb_is_refused_before_anything_is_built(tmp_path: Path) -> None:
    path = _write(tmp_path, ALIAS_BOMB)
    tracemalloc.start()
    try:
        with pytest.raises(ConfigError):
            load_site(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 * 2**20, f"peak {peak} bytes"  # reading allocates a MAX_BYTES buffer; expanded: gigabytes


@pytest.mark.parametrize(
    ("path", "problem"),
    [("/dev/zero", "larger than 1 MiB, the limit for a site file"), (".", "cannot read the file (Is a directory)")],
    ids=["dev-zero", "directory"],
)
def test_what_is_not_a_site_file(path: str, problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_site(Path(path))
    assert str(caught.value) == f"{path}: 1 problem(s) in the site file\n  {problem}"


def test_cli_validate_names_the_line_of_the_alias(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["validate", str(_write(tmp_path, ALIAS_BOMB))])
    assert result.exit_code == 1
    headline = f"error: {tmp_path / 'site.yaml'}: 1 problem(s) in the site file"
    assert result.output == f"{headline}\n  line 2, column 8: {ALIASES.format('a')}\n"


def test_cli_turns_an_unexpected_exception_into_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(path: Path) -> None:
        raise RecursionError("maximum recursion depth exceeded\nmore")

    monkeypatch.setattr("nomadwn.sitefile.load_site", broken)
    monkeypatch.delenv("NOMADWN_DEBUG", raising=False)
    result = CliRunner().invoke(app, ["validate", str(_write(tmp_path, "name: x\n"))])
    assert result.exit_code == 1
    assert result.output == (
        "error: unexpected RecursionError: maximum recursion depth exceeded. This is a bug in nomadwn: please"
        " report it with the command and its input (NOMADWN_DEBUG=true shows the traceback)\n"
    )
    monkeypatch.setenv("NOMADWN_DEBUG", "true")
    result = CliRunner().invoke(app, ["validate", str(_write(tmp_path, "name: x\n"))])
    assert isinstance(result.exception, RecursionError)


# ---------------------------------------------------------------------------
# environment settings


@pytest.mark.parametrize(
    ("read", "env", "problem"),
    [
        (
            CondorSettings.from_env,
            {"NOMADWN_CONDOR_TIMEOUT": "abc"},
            "NOMADWN_CONDOR_TIMEOUT: 'abc' is not a positive number of seconds, such as 20",
        ),
        (
            NomadSettings.from_env,
            {"NOMAD_SKIP_VERIFY": "yes please"},
            "NOMAD_SKIP_VERIFY: 'yes please' is not a boolean: use true or false",
        ),
        (
            NomadSettings.from_env,
            {"NOMAD_ADDR": "http://[::1"},
            "NOMAD_ADDR: 'http://[::1' is not an http(s) address such as https://nomad.example:4646",
        ),
        (
            NomadSettings.from_env,
            {"NOMAD_ADDR": "ftp://nomad:4646"},
            "NOMAD_ADDR: 'ftp://nomad:4646' is not an http(s) address such as https://nomad.example:4646",
        ),
        (
            NomadSettings.from_env,
            {"NOMAD_ADDR": "http://nomad:99999"},
            "NOMAD_ADDR: 'http://nomad:99999' is not an http(s) address such as https://nomad.example:4646",
        ),
        (
            NomadSettings.from_env,
            {"NOMAD_ADDR": "https://nomad:4646/ui"},
            "NOMAD_ADDR: 'https://nomad:4646/ui' has a path or query: give only scheme, host and port,"
            " such as https://nomad.example:4646",
        ),
        (
            ConsulSettings.from_env,
            {"CONSUL_HTTP_SSL": "sure"},
            "CONSUL_HTTP_SSL: 'sure' is not a boolean: use true or false",
        ),
    ],
    ids=[
        "condor-timeout",
        "nomad-skip-verify",
        "nomad-addr-ipv6",
        "nomad-addr-scheme",
        "nomad-addr-port",
        "nomad-addr-path",
        "consul-ssl",
    ],
)
def test_bad_environment_is_a_config_error_naming_the_variable(read: object, env: dict[str, str], problem: str) -> None:
    assert callable(read)
    with pytest.raises(ConfigError) as caught:
        read(env)
    assert str(caught.value) == f"environment: 1 problem(s)\n  {problem}"


def test_a_holder_name_from_the_environment_is_one_printable_line() -> None:
    from nomadwn.cli.autoscale import _env_holder

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("NOMADWN_HOLDER", "replica-1\nforged log line")
        with pytest.raises(ConfigError) as caught:
            _env_holder()
        assert str(caught.value) == (
            "environment: 1 problem(s)\n  NOMADWN_HOLDER: must be one line of printable text of at most 200 characters"
        )
        patch.setenv("NOMADWN_HOLDER", "  alloc-0123  ")
        assert _env_holder() == "alloc-0123"


def test_cli_reports_a_bad_environment_variable(tmp_path: Path) -> None:
    from tests.conftest import EXAMPLE

    result = CliRunner().invoke(
        app, ["autoscale", str(EXAMPLE), "--once", "--dry-run"], env={"NOMADWN_CONDOR_TIMEOUT": "abc", "NOMAD_ADDR": ""}
    )
    assert result.exit_code == 1
    assert result.output == (
        "error: environment: 1 problem(s)\n"
        "  NOMADWN_CONDOR_TIMEOUT: 'abc' is not a positive number of seconds, such as 20\n"
    )


def test_a_missing_nomad_ca_file_is_a_nomad_error_not_a_traceback(tmp_path: Path) -> None:
    from tests.conftest import EXAMPLE

    missing = tmp_path / "no-such-ca.pem"
    env = {"NOMAD_ADDR": "https://127.0.0.1:1", "NOMAD_CACERT": str(missing), "NOMAD_TOKEN": ""}
    result = CliRunner().invoke(app, ["plan", str(EXAMPLE), "cntwn"], env=env)
    assert result.exit_code == 255
    assert result.output == (
        "error: planning job glasgow-cntwn at https://127.0.0.1:1: cannot use the TLS files (Could not find a suitable"
        f" TLS CA certificate bundle, invalid path: {missing}): check that NOMAD_CACERT, NOMAD_CLIENT_CERT and"
        " NOMAD_CLIENT_KEY name readable PEM files\n"
    )
