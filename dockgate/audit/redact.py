"""Redaction: what an audit record must never hold, and masking of what it may hold only in part.

Pure functions over canonical request parts.  Every removal is reported as a
JSON Pointer (RFC 6901) into the record, as OPA's decision logs report their
``erased`` and ``masked`` paths, so a reviewer knows a value existed and was
withheld rather than wondering whether it was ever sent.

Three kinds of secret reach dockgate:

* credentials in headers (``X-Registry-Auth``, ``X-Registry-Config``,
  ``Authorization``): dropped whole, as moby's AuthZ layer drops them before a
  plugin sees a request;
* credentials as a whole body (``POST /auth``, ``POST /secrets/create``'s
  ``Data``): dropped whole;
* secrets inside ordinary values: environment variables (``Env`` lists,
  plugin settings) and build arguments whose *names* look secret, and mapping
  members whose names look secret (``UnlockKey``, ``JoinToken``).  Their
  values are replaced by ``MASK``; the name stays, because "someone set
  DB_PASSWORD" is itself worth auditing.
"""

from __future__ import annotations

import fnmatch
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

__all__ = [
    "DEFAULT_ENV_PATTERNS",
    "MASK",
    "SECRET_HEADERS",
    "Redactor",
    "clip",
    "mask_url_credentials",
]

DEFAULT_ENV_PATTERNS: tuple[str, ...] = (
    "*PASSWORD*", "*PASSWD*", "*PASSPHRASE*", "*SECRET*", "*TOKEN*", "*KEY*", "*CREDENTIAL*",
    "*_PAT", "PAT", "*_PWD", "*_AUTH",
)
"""Names whose values are masked unless the audit policy lists its own patterns
(``GITHUB_PAT``, ``NPM_TOKEN``, ``AWS_SECRET_ACCESS_KEY``, ``DB_PWD``, ``REGISTRY_AUTH``)."""

_URL_CREDENTIAL = re.compile(r"([a-z][a-z0-9+.-]*://[^/\s:@]*:)([^@\s/]+)(@)", re.IGNORECASE)
"""``scheme://user:password@host``: the password part of a URL with credentials."""


def mask_url_credentials(text: str) -> tuple[str, bool]:
    """``text`` with the password of every ``scheme://user:password@`` masked; (text, masked?).

    Connection strings (``DATABASE_URL=postgres://app:pw@db/app``, a git
    remote with a token) carry credentials under names no pattern can guess.
    """
    if "://" not in text:
        return text, False
    masked, count = _URL_CREDENTIAL.subn(lambda m: f"{m.group(1)}{MASK}{m.group(3)}", text)
    return masked, count > 0

MASK = "<masked>"

SECRET_HEADERS = frozenset({
    "authorization", "proxy-authorization", "x-registry-auth", "x-registry-config", "cookie",
})
"""Headers that carry credentials; never recorded, whatever the level."""

BODY_ERASED_ENDPOINTS = frozenset({"system.auth"})
"""Endpoints whose whole body is a credential (moby's AuthZ skips ``/auth`` bodies too)."""

FIELD_ERASED: dict[str, tuple[str, ...]] = {
    "secret.create": ("Data",),
}
"""Top-level body members that are secret by definition, per endpoint."""

ENV_LIST_KEYS = frozenset({"Env"})
"""Body members that hold ``NAME=value`` lists (container, exec, service specs)."""

ENV_LIST_ENDPOINTS = frozenset({"plugin.set"})
"""Endpoints whose whole body is a ``NAME=value`` list."""


TEXT_LIMIT = 2048
"""Longest free-text value kept whole in a record, in characters."""


def clip(value: str | None, limit: int = TEXT_LIMIT) -> str | None:
    """``value`` cut to ``limit`` characters, with a marker saying how much was cut."""
    if value is None or len(value) <= limit:
        return value
    return f"{value[:limit]}...[dockgate: truncated {len(value) - limit} chars]"


def _pointer_part(part: str | int) -> str:
    return str(part).replace("~", "~0").replace("/", "~1")


def pointer(*parts: str | int) -> str:
    """A JSON Pointer to ``parts`` (``pointer("request", "body", "Env", 2)``)."""
    return "".join("/" + _pointer_part(p) for p in parts)


@dataclass(frozen=True)
class Redactor:
    """Masks values by name with case-insensitive shell globs.

    Attributes:
        patterns: name globs (``*PASSWORD*``); matched case-insensitively.
    """

    patterns: tuple[str, ...] = DEFAULT_ENV_PATTERNS
    _regex: re.Pattern[str] = field(init=False, repr=False, compare=False)
    _seen: dict[str, bool] = field(init=False, repr=False, compare=False, default_factory=dict)

    def __post_init__(self) -> None:
        joined = "|".join(f"(?:{fnmatch.translate(p.upper())})" for p in self.patterns)
        # An empty pattern list masks nothing: "(?!)" never matches.
        object.__setattr__(self, "_regex", re.compile(joined or "(?!)", re.DOTALL))

    def secret_name(self, name: str) -> bool:
        """Whether a value under ``name`` is masked (memoised: bodies repeat their keys)."""
        hit = self._seen.get(name)
        if hit is None:
            if len(self._seen) > 8192:
                self._seen.clear()
            hit = self._seen[name] = self._regex.match(name.upper()) is not None
        return hit

    def headers(
        self, headers: Iterable[tuple[str, str]], at: Sequence[str | int], erased: list[str]
    ) -> dict[str, str]:
        """Headers minus credentials; the dropped ones are appended to ``erased``.

        A repeated header keeps its values joined with ``, `` (what HTTP
        allows for list-valued headers), so the record stays a flat mapping.
        """
        out: dict[str, str] = {}
        for name, value in headers:
            lower = name.lower()
            if lower in SECRET_HEADERS:
                mark = pointer(*at, lower)
                if mark not in erased:
                    erased.append(mark)
                continue
            out[lower] = f"{out[lower]}, {value}" if lower in out else value
        return out

    def env_entry(self, entry: object) -> tuple[object, bool]:
        """``NAME=value`` with the value masked if NAME is secret; (entry, masked?)."""
        if not isinstance(entry, str):
            return entry, False
        name, eq, _value = entry.partition("=")
        if eq and self.secret_name(name):
            return f"{clip(name)}={MASK}", True
        entry, hit = mask_url_credentials(entry)
        return clip(entry), hit

    def body(self, endpoint: str, body: Any, at: Sequence[str | int], masked: list[str],
             erased: list[str]) -> Any:
        """A copy of a canonical JSON body with its secrets removed or masked.

        Returns None (and records the erasure) for endpoints whose body is a
        credential.  Never mutates ``body``: the canonical request is shared
        with the forwarding path.
        """
        if body is None:
            return None
        if endpoint in BODY_ERASED_ENDPOINTS:
            erased.append(pointer(*at))
            return None
        if endpoint in ENV_LIST_ENDPOINTS and isinstance(body, list):
            return self._env_list(body, tuple(at), masked)
        if isinstance(body, dict):
            secret_fields = FIELD_ERASED.get(endpoint, ())
            copy = {}
            for key, value in body.items():
                if key in secret_fields:
                    erased.append(pointer(*at, key))
                    continue
                copy[key] = value
            return self._walk(copy, tuple(at), masked)
        return self._walk(body, tuple(at), masked)

    def _env_list(self, values: list[Any], at: tuple[str | int, ...], masked: list[str]) -> Any:
        out: list[Any] = []
        for i, entry in enumerate(values):
            new, hit = self.env_entry(entry)
            if hit:
                masked.append(pointer(*at, i))
            out.append(new)
        return out

    def _walk(self, value: Any, at: tuple[str | int, ...], masked: list[str]) -> Any:
        """Copy ``value`` masking secrets and clipping long strings, in one pass."""
        if isinstance(value, str):
            value, hit = mask_url_credentials(value)
            if hit:
                masked.append(pointer(*at))
            return clip(value)
        if isinstance(value, dict):
            out: dict[str, Any] = {}
            for key, item in value.items():
                here = (*at, key)
                if key in ENV_LIST_KEYS and isinstance(item, list):
                    out[key] = self._env_list(item, here, masked)
                elif isinstance(item, str) and item and self.secret_name(key):
                    out[key] = MASK
                    masked.append(pointer(*here))
                else:
                    out[clip(key) or ""] = self._walk(item, here, masked)
            return out
        if isinstance(value, list):
            return [self._walk(item, (*at, i), masked) for i, item in enumerate(value)]
        return value

    def query(
        self, query: Sequence[tuple[str, str]], masked: list[str]
    ) -> tuple[tuple[str, str], ...]:
        """Query pairs with secret build arguments masked.

        ``buildargs`` is a JSON object of build-time variables, which Docker
        itself warns are visible to anyone with access to the image history
        and which people still use for tokens.
        """
        out: list[tuple[str, str]] = []
        for name, given in query:
            value, hit = mask_url_credentials(
                self._build_args(given, masked) if name == "buildargs" else given)
            if hit:
                masked.append(pointer("query", name))
            out.append((name, value))
        return tuple(out)

    def _build_args(self, value: str, masked: list[str]) -> str:
        try:
            args = json.loads(value)
        except ValueError:
            return value
        if not isinstance(args, dict):
            return value
        changed = False
        for name in list(args):
            if isinstance(name, str) and self.secret_name(name) and args[name] is not None:
                args[name] = MASK
                masked.append(pointer("query", "buildargs", name))
                changed = True
            elif isinstance(args[name], str):
                args[name], hit = mask_url_credentials(args[name])
                if hit:
                    masked.append(pointer("query", "buildargs", name))
                    changed = True
        return json.dumps(args, separators=(",", ":")) if changed else value


def target_of(prefix_version: str | None, path: str, query: Sequence[tuple[str, str]],
              value_limit: int | None = None) -> str:
    """The request target as forwarded (``/v1.41/containers/json?all=1``), from parts.

    Mirrors ``CanonicalRequest.target`` so that a record with masked query
    values still shows the shape of what was sent.  With ``value_limit``, each
    encoded query value longer than that is clipped on its own (``clip``).
    """
    prefix = f"/v{prefix_version}" if prefix_version else ""
    if value_limit is None:
        q = "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in query)
    else:
        q = "&".join(f"{quote(k, safe='')}={clip(quote(v, safe=''), value_limit)}"
                     for k, v in query)
    return prefix + path + ("?" + q if q else "")


QUERY_VALUE_LIMIT = 256
"""In a record whose target would be longer than ``TEXT_LIMIT``, the longest
encoded query value kept whole: each is clipped on its own, so that one long
value (an import's ``changes``, a commit's ``author``) cannot push the others
(``repo``, ``tag``, ``container``, ``fromSrc``) out of the record."""


def recorded_target(prefix_version: str | None, path: str,
                    query: Sequence[tuple[str, str]]) -> str:
    """The target a record shows: whole when it fits ``TEXT_LIMIT``; else every
    query parameter with its value clipped to ``QUERY_VALUE_LIMIT`` and the
    path to ``TEXT_LIMIT``."""
    target = target_of(prefix_version, path, query)
    if len(target) <= TEXT_LIMIT:
        return target
    return target_of(prefix_version, clip(path) or "", query, QUERY_VALUE_LIMIT)
