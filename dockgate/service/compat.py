"""docker-socket-proxy compatibility: its environment variables as a dockgate policy.

Tecnativa's and LinuxServer's docker-socket-proxy images are configured with
one variable per API section (``CONTAINERS=1``, ``IMAGES=1``...) plus
``POST`` for every method other than GET and HEAD.  Many compose files carry
those variables, so ``dockgate import-env`` prints the equivalent policy and
``dockgate serve --compat-env`` runs from them directly: an existing stack can
switch images first and move to a real policy later.

The translation is by endpoint id, not URL prefix, which makes dockgate
stricter in places on purpose:

* ``exec.create`` (``POST /containers/{id}/exec``) needs ``EXEC``; the
  HAProxy images let ``CONTAINERS=1 POST=1`` open it through the
  ``/containers`` prefix.
* ``ALLOW_START``, ``ALLOW_STOP``, ``ALLOW_RESTARTS`` (restart, stop, kill),
  ``ALLOW_PAUSE`` and ``ALLOW_UNPAUSE`` grant their one endpoint whatever
  ``POST`` says, as LinuxServer documents (Tecnativa's image evaluates its
  ``POST`` denial first).
* ``build.grpc`` (``/grpc``) is opened by ``GRPC``, as the prefix rule of the
  images that have it does, or by ``BUILD`` and ``SESSION`` together; with
  ``POST`` either way.
* Variables that look like theirs but are not (``CONTAINER=1``,
  ``ALLOW_RESTART=1``) and values that are not booleans are reported
  (``unknown_variables``), since the images ignore them silently.
* ``container.attach.ws`` is a GET but writes to the container's stdin, so
  it needs ``POST`` like the other attach.
* Requests are parsed and bodies read, so malformed requests a prefix match
  would pass are refused.
"""

from __future__ import annotations

import difflib
import os
import sys
from collections.abc import Mapping, Sequence

from dockgate.admission.routes import ROUTES

__all__ = [
    "SECTIONS",
    "allowed_endpoints",
    "in_container",
    "main",
    "policy_yaml",
    "unknown_variables",
]

SECTIONS: dict[str, str] = {
    "_ping": "PING", "auth": "AUTH", "build": "BUILD", "commit": "COMMIT",
    "configs": "CONFIGS", "containers": "CONTAINERS", "distribution": "DISTRIBUTION",
    "events": "EVENTS", "exec": "EXEC", "images": "IMAGES", "info": "INFO",
    "networks": "NETWORKS", "nodes": "NODES", "plugins": "PLUGINS", "secrets": "SECRETS",
    "services": "SERVICES", "session": "SESSION", "swarm": "SWARM", "system": "SYSTEM",
    "tasks": "TASKS", "version": "VERSION", "volumes": "VOLUMES", "grpc": "GRPC",
}
"""First path segment → the variable that opens it (as the HAProxy rules match prefixes)."""

DEFAULTS: dict[str, str] = {"PING": "1", "EVENTS": "1", "VERSION": "1", "POST": "0"}
"""What the images set when the variable is absent."""

CARVE_OUTS: dict[str, tuple[str, ...]] = {
    "ALLOW_START": ("container.start",),
    "ALLOW_STOP": ("container.stop",),
    "ALLOW_RESTARTS": ("container.restart", "container.stop", "container.kill"),
    "ALLOW_PAUSE": ("container.pause",),
    "ALLOW_UNPAUSE": ("container.unpause",),
}

IGNORED = ("LOG_LEVEL", "DISABLE_IPV6", "SOCKET_PATH", "TZ")
"""Variables the images read that are not about what is allowed."""

_READ_METHODS = ("GET", "HEAD")


def _truthy(value: str | None) -> bool:
    """HAProxy's ``-m bool``: a non-zero integer; ``true``/``yes``/``on`` are accepted too."""
    if value is None:
        return False
    text = value.strip().lower()
    if text in ("true", "yes", "on"):
        return True
    try:
        return int(text) != 0
    except ValueError:
        return False


def _enabled(env: Mapping[str, str], name: str) -> bool:
    return _truthy(env.get(name, DEFAULTS.get(name)))


def _section(template: str, endpoint_id: str) -> tuple[str, ...]:
    """The variables that must all be set for an endpoint."""
    if endpoint_id == "exec.create":
        return ("EXEC",)
    if endpoint_id == "build.grpc":
        return ("BUILD", "SESSION")  # or GRPC alone: see allowed_endpoints
    first = template.lstrip("/").split("/", 1)[0]
    name = SECTIONS.get(first)
    return (name,) if name else ()


def allowed_endpoints(env: Mapping[str, str]) -> list[str]:
    """Endpoint ids the variables allow, in route-table order."""
    post = _enabled(env, "POST")
    carved = {eid for var, ids in CARVE_OUTS.items() if _enabled(env, var) for eid in ids}
    out: list[str] = []
    for route in ROUTES:
        endpoint = route.endpoint
        needs = _section(endpoint.template, endpoint.id)
        opened = (bool(needs) and all(_enabled(env, n) for n in needs)) or (
            endpoint.id == "build.grpc" and _enabled(env, "GRPC"))
        # A hijacked GET (attach over websocket) writes to the container: not a read.
        read = endpoint.method in _READ_METHODS and not endpoint.hijack
        wanted = (opened and (post or read)) or endpoint.id in carved
        if wanted and endpoint.id not in out:
            out.append(endpoint.id)
    return out


def policy_yaml(env: Mapping[str, str]) -> str:
    """A dockgate policy equivalent to the variables, with a header saying where it came from."""
    names = sorted(
        {*SECTIONS.values(), *CARVE_OUTS, "POST"} & set(env) | set(DEFAULTS)
    )
    shown = ", ".join(f"{n}={env.get(n, DEFAULTS.get(n, ''))}" for n in names)
    ignored = [n for n in IGNORED if n in env]
    lines = [
        "# Generated by `dockgate import-env` from docker-socket-proxy variables:",
        f"#   {shown}",
    ]
    if ignored:
        lines.append(f"# Not about access, not translated: {', '.join(ignored)}")
    lines += [
        "name: compat",
        "description: Endpoints allowed by docker-socket-proxy environment variables.",
        "rules:",
        "  - id: compat-sections",
        "    description: Sections enabled by variable; POST=0 allows only GET and HEAD.",
        "    endpoints:",
    ]
    allowed = allowed_endpoints(env)
    if allowed:
        lines.append("      allow:")
        lines += [f"        - {eid}" for eid in allowed]
    else:
        lines.append("      allow: []")
    return "\n".join(lines) + "\n"


_BOOLEAN = frozenset({"0", "1", "true", "false", "yes", "no", "on", "off"})


def unknown_variables(env: Mapping[str, str]) -> list[str]:
    """Warnings for variables that look like docker-socket-proxy's but do nothing.

    The images ignore a misspelt variable (``CONTAINER=1``) silently and the
    stack then fails for want of access; here each one is named with the
    variable it probably meant, and so is a value that is not a boolean.
    """
    known = {*SECTIONS.values(), *CARVE_OUTS, "POST", *IGNORED}
    warnings: list[str] = []
    for name in sorted(env):
        if name in known:
            if name not in IGNORED and env[name].strip().lower() not in _BOOLEAN:
                warnings.append(f"{name}={env[name]!r} is not 0 or 1; "
                                f"it counts as {'1' if _truthy(env[name]) else '0'}")
            continue
        if not name.isupper():
            continue
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.8)
        if close:
            warnings.append(f"{name} is not a docker-socket-proxy variable "
                            f"and is ignored; did you mean {close[0]}?")
    return warnings


def in_container() -> bool:
    """Whether this process looks like it runs in a container (Docker or Podman)."""
    return (
        os.path.exists("/.dockerenv")
        or os.path.exists("/run/.containerenv")
        # systemd's convention: the container manager sets $container.
        or os.environ.get("container", "") not in ("", "systemd-nspawn")  # noqa: SIM112
    )


def default_listen(env: Mapping[str, str]) -> str:
    """Where ``--compat-env`` listens: ``DOCKGATE_LISTEN``, else port 2375 on every
    interface in a container (where the old image listened, reachable only on the
    container's networks), else on loopback."""
    if env.get("DOCKGATE_LISTEN"):
        return env["DOCKGATE_LISTEN"]
    return "tcp:2375:interface=0.0.0.0" if in_container() else "tcp:2375"


def main(argv: Sequence[str]) -> int:
    """``dockgate import-env``: print the policy for this process's environment."""
    if argv and argv[0] in ("-h", "--help"):
        print("Usage: dockgate import-env\n\nPrint the dockgate policy equivalent to the "
              "docker-socket-proxy variables (CONTAINERS, IMAGES, POST, ...) in the environment.")
        return 0
    if argv:
        print(f"dockgate import-env: unexpected arguments: {' '.join(argv)}", file=sys.stderr)
        return 2
    for warning in unknown_variables(os.environ):
        print(f"dockgate import-env: warning: {warning}", file=sys.stderr)
    sys.stdout.write(policy_yaml(os.environ))
    return 0
