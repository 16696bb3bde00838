"""Read a site file (YAML) into a validated :class:`~nomadwn.model.Site`.

The steps, each of which may reject the file with a :class:`ConfigError` that names
the dotted path of every bad field:

0. read at most :data:`MAX_BYTES` of UTF-8 text;
1. parse the YAML, safely (libyaml's C parser where present): duplicate keys, aliases
   (``*name``: an alias bomb, or an alias of itself, could make any walk over the data
   explode), nesting deeper than :data:`MAX_DEPTH`, more than :data:`MAX_NODES` values,
   more than :data:`MAX_FLAVOURS` flavours and any tag beyond YAML's own
   scalars and collections are errors naming the line, never a silent overwrite, a
   traceback or a hang;
2. refuse inline secrets anywhere in the file (an IDTOKEN, a PEM key, a
   password-like key with a literal value): secrets belong in a Nomad Variable or
   Vault, referenced by ``pool_auth``;
3. merge ``defaults`` into each flavour (mappings merge key by key, anything else
   replaces; a mapping whose ``mode`` differs from the default's replaces it whole);
4. validate with pydantic, then the cross-field rules in :func:`flavour_problems`.

Error messages never repeat a value from the file, so a secret pasted into the
wrong field cannot leak through an error.
"""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path
from typing import Any, Final

import yaml
from pydantic import ValidationError

from nomadwn.errors import ConfigError, FieldProblem
from nomadwn.model import Flavour, Site, autoscaler_problems, flavour_problems

_TOP_KEYS = {"name", "nomad", "autoscaler", "monitoring", "defaults", "flavours"}

_JWT_RE = re.compile(r"eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*")
_PEM_RE = re.compile(r"-----BEGIN [A-Z ]*(PRIVATE KEY|TOKEN)-----")
_SECRET_KEY_RE = re.compile(r"(?i)(token|passw|secret|credential|api[_-]?key|private[_-]?key)")


MAX_BYTES: Final = 1 << 20
"""The largest site file read, in bytes (1 MiB: the example is 5 kB, 300 flavours about 400 kB)."""
MAX_FLAVOURS: Final = 1000
"""The most flavours a site may have (a real site has a handful; the render bench goes to 400)."""
MAX_NODES: Final = 50_000
"""The most values (scalars, mappings, sequences) in a site file (the example: 282; 400 flavours: about 30,000)."""
MAX_DEPTH: Final = 32
"""The deepest nesting of mappings and sequences accepted (the site model needs 6)."""

_SafeLoader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml: ten times faster


class _UniqueKeyLoader(_SafeLoader):  # type: ignore[valid-type,misc]
    """A safe YAML loader that refuses duplicate keys instead of keeping the last one.

    A constructor's own error (an integer of more than 4300 digits, a date such as
    2001-13-45) becomes a YAML error at the value's line.
    """

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep=deep)
        except (ValueError, OverflowError) as exc:
            if isinstance(exc, yaml.YAMLError):
                raise
            reason = str(exc).split(";")[0]  # Python's advice after the ';' is not for site admins
            raise yaml.constructor.ConstructorError(
                None, None, f"cannot read this value ({reason})", node.start_mark
            ) from None


class _Refused(yaml.MarkedYAMLError):
    """What the pre-pass over the YAML events refuses (an alias, too deep a nesting)."""


def _check_events(text: str) -> None:
    """Refuse aliases and deep nesting before anything is built (libyaml's events, no objects)."""
    depth = nodes = 0
    for event in yaml.parse(text, Loader=_SafeLoader):
        mark: Any = event.start_mark  # libyaml's Mark or PyYAML's: both have line and column
        if isinstance(event, yaml.AliasEvent):
            raise _Refused(
                problem=f"YAML aliases (*{event.anchor}) are not allowed in a site file: write the value out,"
                " or put settings shared by flavours under defaults",
                problem_mark=mark,
            )
        if isinstance(event, yaml.ScalarEvent | yaml.MappingStartEvent | yaml.SequenceStartEvent):
            nodes += 1
            if nodes > MAX_NODES:
                raise _Refused(
                    problem=f"more than {MAX_NODES:,} values in a site file; a real site has a few thousand",
                    problem_mark=mark,
                )
        if isinstance(event, yaml.MappingStartEvent | yaml.SequenceStartEvent):
            depth += 1
            if depth > MAX_DEPTH:
                raise _Refused(
                    problem=f"nested more than {MAX_DEPTH} levels deep; a site file needs far fewer",
                    problem_mark=mark,
                )
        elif isinstance(event, yaml.MappingEndEvent | yaml.SequenceEndEvent):
            depth -= 1


def _construct_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        try:
            hash(key)
        except TypeError:
            raise yaml.constructor.ConstructorError(
                "while constructing a mapping", node.start_mark, "found unhashable key", key_node.start_mark
            ) from None
        if key in seen:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
        seen.add(key)
    mapping: dict[Any, Any] = loader.construct_mapping(node, deep=deep)
    return mapping


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _dotted(parts: tuple[int | str, ...] | list[int | str]) -> str:
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def find_inline_secrets(data: Any, path: tuple[int | str, ...] = ()) -> list[FieldProblem]:
    """Every place in raw site data that holds what looks like a secret value."""
    found: list[FieldProblem] = []
    if isinstance(data, dict):
        for key, value in data.items():
            sub = (*path, str(key))
            if (
                isinstance(value, str)
                and value
                and _SECRET_KEY_RE.search(str(key))
                and not value.startswith(("/", "$("))
            ):
                found.append(
                    FieldProblem(
                        _dotted(sub),
                        "looks like an inline secret; put it in a Nomad Variable or Vault "
                        "and reference it with pool_auth",
                    )
                )
            else:
                found += find_inline_secrets(value, sub)
    elif isinstance(data, list):
        for i, item in enumerate(data):
            found += find_inline_secrets(item, (*path, i))
    elif isinstance(data, str) and (_JWT_RE.search(data) or _PEM_RE.search(data)):
        found.append(
            FieldProblem(
                _dotted(path),
                "contains a token or private key; secrets never go in a site file: store it in a Nomad Variable "
                "or Vault and reference it with pool_auth",
            )
        )
    return found


def merge(defaults: Any, override: Any) -> Any:
    """Deep-merge ``override`` onto ``defaults`` (see the module docstring for the rules)."""
    if not isinstance(defaults, dict) or not isinstance(override, dict):
        return override
    if "mode" in override and "mode" in defaults and override["mode"] != defaults["mode"]:
        return override
    merged = dict(defaults)
    for key, value in override.items():
        merged[key] = merge(defaults[key], value) if key in defaults else value
    return merged


def _has_path(data: Any, parts: tuple[int | str, ...]) -> bool:
    for part in parts:
        in_dict = isinstance(data, dict) and part in data
        in_list = isinstance(data, list) and isinstance(part, int) and part < len(data)
        if in_dict or in_list:
            data = data[part]
        else:
            return False
    return True


def _describe(error: Any) -> str:
    """A pydantic error's message, without the offending value."""
    kind = error["type"]
    if kind == "extra_forbidden":
        return "unknown key; check the spelling against the configuration reference (nomadwn init writes an example)"
    if kind == "missing":
        return "required, but missing"
    message = str(error["msg"])
    if message.startswith("Value error, "):
        message = message[len("Value error, ") :]
    got = type(error.get("input")).__name__
    if kind.endswith("_type") or kind.endswith("_parsing"):
        message += f" (got {'null' if got == 'NoneType' else got})"
    return message


def _errors(exc: ValidationError) -> list[tuple[tuple[int | str, ...], str]]:
    """Each pydantic error as (location, message), without pydantic's internal location parts."""
    return [
        (tuple(p for p in e["loc"] if not (isinstance(p, str) and p.startswith("function-"))), _describe(e))
        for e in exc.errors()
    ]


def nfc(value: Any) -> Any:
    """Normalise every string in raw data to Unicode NFC, as HCL does with its literals.

    Without it a string could reach Nomad differently through the HCL and the JSON.
    """
    if isinstance(value, str):
        return unicodedata.normalize("NFC", value)
    if isinstance(value, dict):
        return {nfc(k): nfc(v) for k, v in value.items()}
    if isinstance(value, list):
        return [nfc(v) for v in value]
    return value


def parse_site(data: Any, source: str = "<site>") -> Site:
    """Validate already-parsed site data (a dict from YAML) into a :class:`Site`."""
    data = nfc(data)
    if not isinstance(data, dict):
        raise ConfigError(
            source, [FieldProblem("", "the site file must be a mapping with name, defaults and flavours")]
        )
    problems = find_inline_secrets(data)
    if problems:
        raise ConfigError(source, problems)
    problems = [
        FieldProblem(str(k), "unknown top-level key; use name, nomad, autoscaler, monitoring, defaults, flavours")
        for k in data
        if k not in _TOP_KEYS
    ]
    defaults = data.get("defaults") or {}
    flavours_raw = data.get("flavours")
    if not isinstance(defaults, dict):
        problems.append(FieldProblem("defaults", "must be a mapping of flavour settings"))
        defaults = {}
    if not isinstance(flavours_raw, dict) or not flavours_raw:
        problems.append(
            FieldProblem("flavours", "name at least one flavour, as a mapping from flavour name to its settings")
        )
        raise ConfigError(source, problems)

    if len(flavours_raw) > MAX_FLAVOURS:
        problems.append(
            FieldProblem("flavours", f"at most {MAX_FLAVOURS} flavours in a site file, not {len(flavours_raw)}")
        )
        raise ConfigError(source, problems)

    flavours: dict[str, Flavour] = {}
    # A bad default is reported once, naming every flavour it breaks.
    from_defaults: dict[tuple[str, str], list[str]] = {}
    for name, raw in flavours_raw.items():
        if raw is not None and not isinstance(raw, dict):
            problems.append(FieldProblem(f"flavours.{name}", "must be a mapping of flavour settings"))
            continue
        own = raw or {}
        try:
            flavours[str(name)] = Flavour.model_validate(merge(defaults, own))
        except ValidationError as exc:
            for loc, message in _errors(exc):
                if loc and not _has_path(own, loc) and _has_path(defaults, loc):
                    from_defaults.setdefault((f"defaults.{_dotted(loc)}", message), []).append(str(name))
                else:
                    problems.append(FieldProblem(_dotted(("flavours", name, *loc)), message))
    for (path, message), names in from_defaults.items():
        used_by = f"flavour {names[0]}" if len(names) == 1 else f"flavours {', '.join(names)}"
        problems.append(FieldProblem(f"{path} (used by {used_by})", message))
    if problems:
        raise ConfigError(source, problems)
    try:
        site = Site.model_validate(
            {
                "name": data.get("name"),
                "nomad": data.get("nomad") or {},
                "autoscaler": data.get("autoscaler"),
                "monitoring": data.get("monitoring") or {},
                "flavours": flavours,
            }
        )
    except ValidationError as exc:
        raise ConfigError(source, [FieldProblem(_dotted(loc), msg) for loc, msg in _errors(exc)]) from None
    problems += autoscaler_problems(site)
    for name in site.flavours:
        problems += flavour_problems(site, name)
    if problems:
        raise ConfigError(source, problems)
    return site


def _read_text(path: Path, source: str) -> str:
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_BYTES + 1)  # bounded: /dev/zero or a huge file cannot fill memory
    except FileNotFoundError:
        raise ConfigError(
            source, [FieldProblem("", "no such file; nomadwn init PATH writes an example site file")]
        ) from None
    except OSError as exc:
        reason = exc.strerror or exc.__class__.__name__
        raise ConfigError(source, [FieldProblem("", f"cannot read the file ({reason})")]) from None
    if len(raw) > MAX_BYTES:
        raise ConfigError(
            source, [FieldProblem("", f"larger than {MAX_BYTES // 2**20} MiB, the limit for a site file")]
        )
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ConfigError(
            source, [FieldProblem("", f"line {line}: not UTF-8 text (byte {exc.start}); save the file as UTF-8")]
        ) from None


def parse_yaml(text: str, source: str = "<site>") -> Any:
    """Parse site-file YAML safely (see the module docstring); a :class:`ConfigError` names the line."""
    try:
        _check_events(text)
        return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        position = getattr(exc, "position", None)  # a ReaderError (a control character) has no mark
        if mark is not None:
            where = f"line {mark.line + 1}, column {mark.column + 1}: "
        elif isinstance(position, int):
            where = f"line {text[:position].count(chr(10)) + 1}: "
        else:
            where = ""
        problem = getattr(exc, "problem", None) or getattr(exc, "reason", None) or "not valid YAML"
        raise ConfigError(source, [FieldProblem("", f"{where}{problem}")]) from None


def load_site(path: Path) -> Site:
    """Read and validate a site file. Raises :class:`ConfigError` naming every bad field."""
    source = str(path)
    return parse_site(parse_yaml(_read_text(path, source), source), source)
