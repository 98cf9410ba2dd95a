"""The dockgate config file: everything ``dockgate serve`` takes, in one YAML file.

A long command line in a unit file is hard to review and impossible to
validate before a restart; a file can be checked (``dockgate config check``)
and kept in version control.  The file maps onto the serve options one for
one, so there is a single set of meanings: the config supplies defaults and
any option given on the command line wins.

Format (every problem is reported as ``file:line: field: why``, with the
policy files' YAML reader: duplicate keys and unknown fields are refused)::

    listeners:                       # strings in --listen syntax, or mappings
      - unix:/run/dockgate.sock:group=docker
      - {unix: /run/dockgate-ci.sock, mode: "660", group: ci}
      - {tcp: 2375}                  # loopback unless interface is given
      - {tls: 2376, interface: 0.0.0.0, cert: server.pem, key: server.key, ca: ca.pem}
    upstream: unix:/var/run/docker.sock
    policy: /etc/dockgate/policy.yaml        # relative paths: to this file
    tenants: /etc/dockgate/tenants.yaml
    admin: tcp:9323                          # /metrics, /healthz, /readyz
    audit: {log: /var/log/dockgate/audit.jsonl, fsync: interval, failure: closed}
    limits: {max_connections_per_peer: 64, max_json_body: 1048576, head_timeout: 30}

On SIGHUP the file is read again: a changed policy, tenants or audit policy
path takes effect with the reload; everything else (listeners, upstream,
limits, the admin listener) needs a restart, and the log says so.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from dockgate.policy.source import Document, PolicyError, read_yaml, schema_problems
from dockgate.service.listener_spec import (
    OPEN_TCP,
    DelegatedListenerSpec,
    parse_admin_listener,
    parse_listener,
    parse_upstream,
    plain_tcp_loopback,
)

__all__ = ["CONFIG_SCHEMA", "Config", "load_config", "main"]

_str: dict[str, Any] = {"type": "string", "minLength": 1}
_pos: dict[str, Any] = {"type": "number", "exclusiveMinimum": 0}
_posint: dict[str, Any] = {"type": "integer", "minimum": 1}
_port: dict[str, Any] = {"type": ["integer", "string"]}


def _obj(required: Sequence[str] = (), **props: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "additionalProperties": False, "required": list(required),
            "properties": props}


_LISTENER: dict[str, Any] = {
    "oneOf": [
        _str,
        _obj(["unix"], unix=_str, mode={"type": "string", "pattern": "^0?[0-7]{3}$"}, group=_str,
             backlog=_posint, lockfile={"type": "boolean"}),
        _obj(["tcp"], tcp=_port, interface=_str, backlog=_posint),
        _obj(["tcp6"], tcp6=_port, interface=_str, backlog=_posint),
        _obj(["tls"], tls=_port, interface=_str, cert=_str, key=_str, ca=_str, backlog=_posint),
        _obj(["systemd"], systemd=_str),
    ]
}

AUDIT_KEYS: dict[str, dict[str, Any]] = {
    "log": _str,
    "policy": _str,
    "sessions": _str,
    "fsync": {"enum": ["always", "interval", "never"]},
    "fsync_interval": _pos,
    "failure": {"enum": ["closed", "open"]},
    "key": _str,
    "checkpoint_every": _posint,
    "checkpoint_interval": _pos,
    "rotate_size": {"type": "integer", "minimum": 0},
    "rotate_interval": {"type": "number", "minimum": 0},
    "syslog": {"enum": ["off", "all", "checkpoints"]},
    "journald": {"enum": ["off", "all", "checkpoints"]},
}

LIMIT_KEYS: dict[str, dict[str, Any]] = {
    "connect_timeout": _pos,
    "response_timeout": _pos,
    "head_timeout": _pos,
    "idle_timeout": _pos,
    "max_json_body": _posint,
    "max_head_size": _posint,
    "pool_size": {"type": "integer", "minimum": 0},
    "admission_workers": {"type": "integer", "minimum": 0},
    "max_connections": _posint,
    "max_connections_per_peer": _posint,
}

CONFIG_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "dockgate config",
    **_obj(
        listeners={"type": "array", "items": _LISTENER, "minItems": 1},
        upstream=_str,
        policy=_str,
        tenants=_str,
        admin=_str,
        audit=_obj((), **AUDIT_KEYS),
        limits=_obj((), **LIMIT_KEYS),
        log_format={"enum": ["text", "json"]},
        access_log={"type": "boolean"},
        insecure_listen={"type": "boolean"},
    ),
}

_PATH_AUDIT_KEYS = ("log", "policy", "sessions", "key")


@dataclass
class Config:
    """A validated config file.

    Attributes:
        path: the file.
        listeners: listener strings in ``--listen`` syntax, in file order.
        options: serve option name (``audit-log``, ``max-connections``...) to value,
            paths already made absolute.
    """

    path: str
    listeners: list[str] = field(default_factory=list)
    options: dict[str, Any] = field(default_factory=dict)


def _escape(value: object) -> str:
    return str(value).replace("\\", "\\\\").replace(":", "\\:")


def _listener_text(item: Any, base: str) -> str:
    """A listener mapping in ``--listen`` syntax (strings are kept as they are);
    TLS file names are made absolute against ``base``."""
    if isinstance(item, str):
        return item
    kind = next(k for k in ("unix", "tcp", "tcp6", "tls", "systemd") if k in item)
    if kind == "systemd":
        return f"systemd:{item['systemd']}"
    parts = [kind, _escape(item[kind])]
    for key, given in item.items():
        if key != kind:
            value = given
            if isinstance(given, bool):
                value = int(given)
            elif key in ("cert", "key", "ca"):
                value = _absolute(base, given)
            parts.append(f"{key}={_escape(value)}")
    return ":".join(parts)


def _absolute(base: str, value: str) -> str:
    if value == "-" or os.path.isabs(value):
        return value
    return os.path.normpath(os.path.join(base, value))


def parse_config(doc: Document) -> Config:
    """Validate a parsed document and turn it into serve options.

    Raises:
        PolicyError: every problem, as ``file:line: field: why``.
    """
    problems = schema_problems(doc, CONFIG_SCHEMA)
    if doc.data is None:
        problems = [doc.problem((), "empty config file")]
    if problems:
        raise PolicyError(problems)
    data: dict[str, Any] = doc.data
    base = os.path.dirname(os.path.abspath(doc.file))
    config = Config(doc.file)
    for i, item in enumerate(data.get("listeners", [])):
        text = _listener_text(item, base)
        try:
            spec = parse_listener(text)
        except ValueError as e:
            problems.append(doc.problem(("listeners", i), str(e)))
        else:
            if (isinstance(spec, DelegatedListenerSpec) and plain_tcp_loopback(spec) is False
                    and not data.get("insecure_listen")):
                problems.append(doc.problem(("listeners", i), f"{OPEN_TCP}, or set "
                                            "insecure_listen: true if that is what you mean"))
        config.listeners.append(text)
    checks = {"upstream": parse_upstream, "admin": parse_admin_listener}
    for key, check in checks.items():
        if key in data:
            try:
                check(data[key])
            except ValueError as e:
                problems.append(doc.problem((key,), str(e)))
    if problems:
        raise PolicyError(problems)
    for key in ("upstream", "policy", "tenants"):
        if key in data:
            value = data[key]
            config.options[key] = value if key == "upstream" else _absolute(base, value)
    if "admin" in data:
        config.options["admin-listen"] = data["admin"]
    if "log_format" in data:
        config.options["log-format"] = data["log_format"]
    if "access_log" in data:
        config.options["access-log"] = "on" if data["access_log"] else "off"
    if "insecure_listen" in data:
        config.options["insecure-listen"] = 1 if data["insecure_listen"] else 0
    for key, value in data.get("audit", {}).items():
        name = "audit-log" if key == "log" else "audit-" + key.replace("_", "-")
        config.options[name] = _absolute(base, value) if key in _PATH_AUDIT_KEYS else value
    for key, value in data.get("limits", {}).items():
        config.options[key.replace("_", "-")] = value
    return config


def load_config(path: str) -> Config:
    """Read, validate and convert ``path`` (raises PolicyError with file:line problems)."""
    return parse_config(read_yaml(path))


def referenced_problems(config: Config) -> list[str]:
    """Problems with the files the config names: each policy, tenants and audit policy
    file must exist and load, as ``dockgate serve`` would load it."""
    from dockgate.audit.rules import load_audit_policy  # noqa: PLC0415 (only for check)
    from dockgate.policy import load_policy  # noqa: PLC0415
    from dockgate.tenancy import TenantMap  # noqa: PLC0415

    loaders: dict[str, Any] = {
        "policy": load_policy, "tenants": TenantMap.load, "audit-policy": load_audit_policy,
    }
    problems: list[str] = []
    for name, loader in loaders.items():
        path = config.options.get(name)
        if path is None:
            continue
        try:
            loader(path)
        except PolicyError as e:
            problems.extend(e.problems)
        except OSError as e:
            problems.append(f"{config.path}: {name}: {path}: {e}")
    return problems


def main(argv: Sequence[str]) -> int:
    """``dockgate config check [--syntax-only] FILE...``: validate without starting."""
    import argparse  # noqa: PLC0415

    parser = argparse.ArgumentParser(prog="dockgate config")
    sub = parser.add_subparsers(dest="command", required=True)
    check = sub.add_parser("check", help="validate config files (exit 1 on any problem)")
    check.add_argument("--syntax-only", action="store_true",
                       help="do not load the policy, tenants and audit policy files it names")
    check.add_argument("files", nargs="+", metavar="FILE")
    args = parser.parse_args(list(argv))
    failed = False
    for path in args.files:
        try:
            config = load_config(path)
            problems = [] if args.syntax_only else referenced_problems(config)
        except PolicyError as e:
            problems = list(e.problems)
        if problems:
            failed = True
            for line in problems:
                print(line, file=sys.stderr)
        else:
            print(f"{path}: ok")
    return 1 if failed else 0
