"""How to reach Consul: :class:`ConsulSettings`, from HashiCorp's ``CONSUL_*`` environment variables.

Client-free (no py-consul, no requests). Precedence: defaults < environment < explicit
overrides (flags). How each setting reaches py-consul is written down in
:mod:`nomadwn.consul_health`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, Final
from urllib.parse import urlsplit

from nomadwn.env import env_bool, raise_problems
from nomadwn.errors import ConfigError, FieldProblem

DEFAULT_ADDRESS: Final = "127.0.0.1:8500"
DEFAULT_TIMEOUT: Final = 10.0
_SETTINGS: Final = "Consul settings"
_REDACTED: Final = "<redacted>"


def parse_address(address: str) -> tuple[str, str, int]:
    """``(scheme, host, port)`` of an ``http(s)://host[:port]`` or ``host:port`` address."""
    text = address.strip()
    parts = urlsplit(text if "://" in text else f"http://{text}")
    scheme = parts.scheme.lower()
    try:
        port = parts.port
    except ValueError:
        port = -1
    if (
        scheme not in ("http", "https")
        or not parts.hostname
        or port == -1
        or parts.path not in ("", "/")
        or parts.query
        or parts.fragment
    ):
        raise ConfigError(
            _SETTINGS,
            [
                FieldProblem(
                    "address",
                    f"{address!r} is not a Consul HTTP address such as 127.0.0.1:8500 or"
                    " https://consul.example:8501 (set CONSUL_HTTP_ADDR; unix sockets and path"
                    " prefixes are not supported)",
                )
            ],
            context="",
        )
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return scheme, host, port or (443 if scheme == "https" else 80)


def _read_token_file(path: str, problems: list[FieldProblem]) -> str | None:
    try:
        with open(path, encoding="utf-8") as handle:
            token = handle.read().strip()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        problems.append(FieldProblem("CONSUL_HTTP_TOKEN_FILE", f"cannot read the token file {path}: {reason}"))
        return None
    return token or None


@dataclass(frozen=True, repr=False)
class ConsulSettings:
    """How to reach Consul. Precedence: defaults < environment (``CONSUL_*``) < explicit overrides.

    ``address`` is normalised to ``scheme://host:port``. ``verify`` is on unless turned
    off explicitly; ``ca_cert`` is then the CA bundle to trust. ``timeout`` is seconds.
    The token is never shown by ``repr`` or ``str``.
    """

    address: str = f"http://{DEFAULT_ADDRESS}"
    token: str | None = None
    ca_cert: str | None = None
    client_cert: str | None = None
    client_key: str | None = None
    verify: bool = True
    namespace: str | None = None
    timeout: float = DEFAULT_TIMEOUT

    def __post_init__(self) -> None:
        scheme, host, port = parse_address(self.address)
        object.__setattr__(self, "address", f"{scheme}://{host}:{port}")
        problems: list[FieldProblem] = []
        if isinstance(self.timeout, bool) or not (math.isfinite(self.timeout) and self.timeout > 0):
            problems.append(FieldProblem("timeout", f"must be a positive number of seconds, not {self.timeout!r}"))
        if self.client_key and not self.client_cert:
            problems.append(
                FieldProblem("client_key", "a client key needs a client certificate: set CONSUL_CLIENT_CERT too")
            )
        if problems:
            raise ConfigError(_SETTINGS, problems, context="")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> ConsulSettings:
        """Settings from HashiCorp's ``CONSUL_*`` variables, then ``overrides`` (flags; None is ignored).

        As in Consul's own CLI: ``CONSUL_HTTP_SSL=true`` makes an address without a
        scheme (and an ``http://`` one from the environment) use https; a token read from
        ``CONSUL_HTTP_TOKEN_FILE`` beats ``CONSUL_HTTP_TOKEN``. An explicit ``token``
        override wins over both, and the token file is then not read. An explicit
        ``address`` with a scheme is taken as it is.
        """
        env = os.environ if environ is None else environ
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise TypeError(f"unknown Consul setting(s): {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        flags = {key: value for key, value in overrides.items() if value is not None}
        problems: list[FieldProblem] = []
        ssl = env_bool(env, "CONSUL_HTTP_SSL", problems)
        skip_verify = env_bool(env, "CONSUL_HTTP_SSL_VERIFY", problems) is False
        scheme = "https" if ssl else "http"

        values: dict[str, Any] = {}
        if "address" in flags:
            address = str(flags.pop("address")).strip()
            parse_address(address)  # so that an error shows the address as given
            values["address"] = address if "://" in address else f"{scheme}://{address}"
        else:
            address = env.get("CONSUL_HTTP_ADDR", "").strip() or DEFAULT_ADDRESS
            parse_address(address)
            if "://" not in address:
                address = f"{scheme}://{address}"
            elif ssl and address.lower().startswith("http://"):
                address = "https://" + address[len("http://") :]  # Consul never reverts to http once asked for TLS
            values["address"] = address

        if "token" not in flags:
            token_file = env.get("CONSUL_HTTP_TOKEN_FILE", "")
            token = _read_token_file(token_file, problems) if token_file else None
            values["token"] = token or env.get("CONSUL_HTTP_TOKEN") or None
        for var, key in (
            ("CONSUL_CACERT", "ca_cert"),
            ("CONSUL_CLIENT_CERT", "client_cert"),
            ("CONSUL_CLIENT_KEY", "client_key"),
            ("CONSUL_NAMESPACE", "namespace"),
        ):
            if env.get(var):
                values[key] = env[var]
        if skip_verify:
            values["verify"] = False
        raise_problems(problems)
        values.update(flags)
        return cls(**values)

    def __repr__(self) -> str:
        shown = {f.name: getattr(self, f.name) for f in fields(self)}
        if self.token:
            shown["token"] = _REDACTED
        return "ConsulSettings(" + ", ".join(f"{key}={value!r}" for key, value in shown.items()) + ")"

    def __str__(self) -> str:
        return f"Consul at {self.address}" + (" (with a token)" if self.token else "")
