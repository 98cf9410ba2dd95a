"""Response redaction for read-only consumers and tenants (policy control ``redact``).

What a read-only consumer may *read* matters as much as what it may change:
inspect answers carry every container's environment (``Config.Env``, where
passwords and tokens live), and ``/events`` carries the command line of every
exec (``exec_create: sh -c 'mysql -pSECRET'``).  A ``redact`` rule makes
dockgate rewrite those answers before the client sees a byte of them:

* ``env: true`` replaces the value of every environment variable, or
  ``env_names`` only those whose name matches a glob, with ``<redacted>``
  (``NAME=<redacted>``: the list keeps its length, order and names) in
  container, image, service and task inspect and list answers;
* ``exec_commands: true`` replaces the command in the exec events' ``Action``
  and ``status`` (``exec_create: <redacted>``) and the ``arguments`` of exec
  inspect (``ProcessConfig``).

The JSON shape clients expect is kept (the docker CLI, docker-py and Traefik
read these answers); a rewritten JSON answer gets its own Content-Length (see
``protocol._send_held``), and ``/events`` is rewritten line by line as it
streams (``EventRedactor``): only the partial line at the end of a read is
held, and lines that cannot carry an exec command pass untouched.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from dockgate.model import CanonicalRequest, Peer
from dockgate.policy import spelling

REDACTED = "<redacted>"

_ENV_PATHS: dict[str, tuple[tuple[str, ...], ...]] = {
    "container.inspect": (("Config", "Env"),),
    "image.inspect": (("Config", "Env"), ("ContainerConfig", "Env")),
    "service.inspect": (("Spec", "TaskTemplate", "ContainerSpec", "Env"),),
    "service.list": (("Spec", "TaskTemplate", "ContainerSpec", "Env"),),
    "task.inspect": (("Spec", "ContainerSpec", "Env"),),
    "task.list": (("Spec", "ContainerSpec", "Env"),),
}
"""Where each answer holds environment lists (for lists: in each item)."""

ENDPOINTS = frozenset({*_ENV_PATHS, "exec.inspect", "system.events"})
"""Endpoints whose answers a ``redact`` rule may rewrite."""

_EXEC_ACTION = re.compile(r"^(exec_create|exec_start): ")
MAX_EVENT_LINE = 1 << 20
"""Longest event line held while waiting for its end (the stream is ended above)."""


class Redaction:
    """A compiled ``redact`` rule."""

    def __init__(self, cfg: Mapping[str, Any]) -> None:
        self.all_env = bool(cfg.get("env", False))
        self.env_names = tuple(spelling.name_pattern(g) for g in cfg.get("env_names", ()))
        self.exec_commands = bool(cfg.get("exec_commands", False))

    @property
    def env(self) -> bool:
        return self.all_env or bool(self.env_names)

    def env_entry(self, entry: Any) -> Any:
        """``NAME=value`` with the value redacted when the rule covers NAME."""
        if not isinstance(entry, str) or "=" not in entry:
            return entry
        name = entry.split("=", 1)[0]
        if self.all_env or any(p.match(name) for p in self.env_names):
            return f"{name}={REDACTED}"
        return entry

    def action(self, action: Any) -> Any:
        """An event ``Action``/``status`` without the exec command line."""
        if isinstance(action, str):
            m = _EXEC_ACTION.match(action)
            if m:
                return f"{m.group(1)}: {REDACTED}"
        return action


def _walk_env(value: Any, path: Sequence[str], rule: Redaction) -> None:
    *parents, last = path
    for key in parents:
        value = value.get(key) if isinstance(value, dict) else None
    if isinstance(value, dict) and isinstance(value.get(last), list):
        value[last] = [rule.env_entry(e) for e in value[last]]


def transform(rules: Sequence[Redaction], endpoint_id: str) -> Callable[[Any], Any] | None:
    """The rewrite of a JSON answer of ``endpoint_id`` under ``rules``, or None."""
    paths = _ENV_PATHS.get(endpoint_id, ())
    env_rules = [r for r in rules if r.env] if paths else []
    exec_rules = [r for r in rules if r.exec_commands] if endpoint_id == "exec.inspect" else []
    if not env_rules and not exec_rules:
        return None

    def rewrite(value: Any) -> Any:
        items = value if isinstance(value, list) else [value]
        for item in items:
            for rule in env_rules:
                for path in paths:
                    _walk_env(item, path, rule)
            process = item.get("ProcessConfig") if isinstance(item, dict) else None
            if exec_rules and isinstance(process, dict):
                args = process.get("arguments")
                if isinstance(args, list):
                    process["arguments"] = [REDACTED for _ in args]
        return value

    return rewrite


class EventRedactor:
    """Rewrites an ``/events`` stream line by line as it arrives.

    ``feed`` returns the bytes to send now: every complete line, rewritten when
    it is an exec event; a partial last line waits for its end.  Lines are
    JSON objects the daemon writes one per event.
    """

    def __init__(self, rules: Sequence[Redaction]) -> None:
        self.rules = rules
        self._partial = b""

    def feed(self, data: bytes) -> bytes:
        """Raises ValueError: a line longer than ``MAX_EVENT_LINE``."""
        if self._partial:
            data, self._partial = self._partial + data, b""
        end = data.rfind(b"\n") + 1
        if end < len(data):
            self._partial = data[end:]
            if len(self._partial) > MAX_EVENT_LINE:
                raise ValueError("event line too long to redact")
            data = data[:end]
        if b"exec_" not in data:
            return data  # nothing to rewrite in these lines
        return b"".join(self._line(line) for line in data.splitlines(keepends=True))

    def finish(self) -> bytes:
        """What is left at the end of the stream (a last line without its newline)."""
        rest, self._partial = self._partial, b""
        return self._line(rest) if rest else b""

    def _line(self, line: bytes) -> bytes:
        body = line.rstrip(b"\r\n")
        event = _json_object(body) if b"exec_" in body else None
        if event is None:
            return line
        new: dict[str, Any] = {
            key: self._action(event[key]) for key in ("Action", "status") if key in event
        }
        if all(event[key] == value for key, value in new.items()):
            return line
        event.update(new)
        return json.dumps(event, separators=(",", ":")).encode() + line[len(body):]

    def _action(self, action: Any) -> Any:
        for rule in self.rules:
            action = rule.action(action)
        return action


def _json_object(raw: bytes) -> dict[str, Any] | None:
    """``raw`` as a JSON object, or None when it is not one."""
    with contextlib.suppress(ValueError):
        value = json.loads(raw)
        if isinstance(value, dict):
            return value
    return None


def rules_for(policy: object, request: CanonicalRequest, peer: Peer) -> list[Redaction]:
    """The ``redact`` rules of ``policy`` that apply to ``request`` from ``peer``."""
    eid = request.endpoint.id
    if eid not in ENDPOINTS:
        return []
    found: list[Redaction] = []
    for rule in getattr(policy, "rules", ()):
        redaction = getattr(rule.check, "redaction", None)
        if (
            isinstance(redaction, Redaction)
            and rule.applies_to(eid)
            and not rule.exempts(peer)
        ):
            found.append(redaction)
    return found
