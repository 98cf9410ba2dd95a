"""The route table: every Engine API operation dockgate knows, and how a
canonical path is matched against it.

The table mirrors the daemon's own router (moby ``daemon/server/router/*``,
gorilla/mux).  Two kinds of path parameter exist there, and the difference
matters for security:

* ``{name:.*}`` (containers, images, plugins, volumes, networks, exec): the
  daemon's regex matches across ``/``.  Image and plugin references contain
  slashes legitimately (``docker.io/library/alpine``), so ``ref`` parameters
  here may contain ``/`` too.  Exec, network and volume names never do, and
  container names only as a legacy link's name (``<parent>/<alias>``), which
  clients send to one operation alone: removing the link
  (``DELETE /containers/c2/alias?link=1``), the one container route that takes
  a slashed name here, as the daemon's does.  Elsewhere they are single
  segments: a path that the daemon would
  route only by letting such a name swallow a ``/`` (for example the
  experimental ``/containers/{name}/checkpoints/{id}`` routes, which a daemon
  without them would read as a container delete of ``c/checkpoints/x``) is
  refused with 403 rather than guessed at.
* ``{id}`` (swarm objects): one segment, as here.

Ids are stable dotted names used by policies and audit records; never rename
one.  ``since``/``until`` bound the API versions in which the operation exists
(``until`` is inclusive).  Operations absent from every snapshot but used by
real clients are listed with the moby source that defines them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from dockgate.model import BodyKind, Operation


@dataclass(frozen=True, slots=True)
class Route:
    """An endpoint with its compiled matcher.

    Attributes:
        endpoint: the operation.
        pattern: full-match regex over the canonical decoded path.
        loose: the daemon's own (greedy) regex for the same template, used to
            tell "the daemon would route this" (403) from "nothing would" (404).
        params: names of the path parameters, in order.
    """

    endpoint: Operation
    pattern: re.Pattern[str]
    loose: re.Pattern[str]
    params: tuple[str, ...]


# (id, method, template, body, hijack, since, until)
# Template parameter syntax: {name} is one segment, {name*} may contain "/".
_TABLE: tuple[tuple[str, str, str, BodyKind, bool, str, str | None], ...] = (
    # system
    ("system.ping", "GET", "/_ping", "none", False, "1.18", None),
    ("system.ping.head", "HEAD", "/_ping", "none", False, "1.18", None),
    ("system.auth", "POST", "/auth", "json", False, "1.18", None),
    ("system.info", "GET", "/info", "none", False, "1.18", None),
    ("system.version", "GET", "/version", "none", False, "1.18", None),
    ("system.events", "GET", "/events", "none", False, "1.18", None),
    ("system.df", "GET", "/system/df", "none", False, "1.25", None),
    # build (BuildKit's /session and /grpc are hijacked HTTP/2 tunnels)
    ("image.build", "POST", "/build", "stream", False, "1.18", None),
    ("build.prune", "POST", "/build/prune", "none", False, "1.31", None),
    # Not in the OpenAPI snapshots: moby daemon/server/router/build/build.go
    # registers POST /build/cancel (postCancel, query "id"); the docker CLI and
    # client call it (client ImageBuildCancel / BuildCancel) when a build is interrupted.
    ("build.cancel", "POST", "/build/cancel", "none", False, "1.32", None),
    ("build.session", "POST", "/session", "none", True, "1.31", None),
    # Not in the snapshots: moby daemon/server/router/grpc/grpc.go registers
    # POST /grpc, the BuildKit controller API used by buildx's docker driver.
    ("build.grpc", "POST", "/grpc", "none", True, "1.40", None),
    ("image.commit", "POST", "/commit", "json", False, "1.18", None),
    # containers
    ("container.list", "GET", "/containers/json", "none", False, "1.18", None),
    ("container.create", "POST", "/containers/create", "json", False, "1.18", None),
    ("container.prune", "POST", "/containers/prune", "none", False, "1.25", None),
    ("container.inspect", "GET", "/containers/{id}/json", "none", False, "1.18", None),
    ("container.top", "GET", "/containers/{id}/top", "none", False, "1.18", None),
    ("container.logs", "GET", "/containers/{id}/logs", "none", False, "1.18", None),
    ("container.changes", "GET", "/containers/{id}/changes", "none", False, "1.18", None),
    ("container.export", "GET", "/containers/{id}/export", "none", False, "1.18", None),
    ("container.stats", "GET", "/containers/{id}/stats", "none", False, "1.18", None),
    ("container.resize", "POST", "/containers/{id}/resize", "none", False, "1.18", None),
    # "json": clients may send "{}" (ignored by the daemon, see admission.admit_body).
    ("container.start", "POST", "/containers/{id}/start", "json", False, "1.18", None),
    ("container.stop", "POST", "/containers/{id}/stop", "none", False, "1.18", None),
    ("container.restart", "POST", "/containers/{id}/restart", "none", False, "1.18", None),
    ("container.kill", "POST", "/containers/{id}/kill", "none", False, "1.18", None),
    ("container.update", "POST", "/containers/{id}/update", "json", False, "1.22", None),
    ("container.rename", "POST", "/containers/{id}/rename", "none", False, "1.18", None),
    ("container.pause", "POST", "/containers/{id}/pause", "none", False, "1.18", None),
    ("container.unpause", "POST", "/containers/{id}/unpause", "none", False, "1.18", None),
    ("container.attach", "POST", "/containers/{id}/attach", "none", True, "1.18", None),
    ("container.attach.ws", "GET", "/containers/{id}/attach/ws", "none", True, "1.18", None),
    ("container.wait", "POST", "/containers/{id}/wait", "none", False, "1.18", None),
    # moby: DELETE /containers/{name:.*}.  The one container operation real
    # clients send a slashed name to: a legacy link's name is <parent>/<alias>
    # (docker rm --link c2/alias, docker-py remove_container('c2/alias', link=True)),
    # and no other DELETE route under /containers exists (the experimental
    # checkpoint delete is refused first, see _UNSUPPORTED).
    ("container.delete", "DELETE", "/containers/{id*}", "none", False, "1.18", None),
    # Removed: the daemon answers 404 from API 1.24 on (moby postContainersCopy).
    ("container.copy", "POST", "/containers/{id}/copy", "json", False, "1.18", "1.23"),
    ("container.archive.head", "HEAD", "/containers/{id}/archive", "none", False, "1.20", None),
    ("container.archive", "GET", "/containers/{id}/archive", "none", False, "1.20", None),
    ("container.archive.put", "PUT", "/containers/{id}/archive", "stream", False, "1.20", None),
    ("exec.create", "POST", "/containers/{id}/exec", "json", False, "1.18", None),
    ("exec.start", "POST", "/exec/{id}/start", "json", True, "1.18", None),
    ("exec.resize", "POST", "/exec/{id}/resize", "none", False, "1.18", None),
    ("exec.inspect", "GET", "/exec/{id}/json", "none", False, "1.18", None),
    # images
    ("image.list", "GET", "/images/json", "none", False, "1.18", None),
    ("image.create", "POST", "/images/create", "stream", False, "1.18", None),
    ("image.load", "POST", "/images/load", "stream", False, "1.18", None),
    ("image.search", "GET", "/images/search", "none", False, "1.18", None),
    ("image.prune", "POST", "/images/prune", "none", False, "1.25", None),
    ("image.get_all", "GET", "/images/get", "none", False, "1.18", None),
    ("image.get", "GET", "/images/{name*}/get", "none", False, "1.18", None),
    ("image.history", "GET", "/images/{name*}/history", "none", False, "1.18", None),
    ("image.inspect", "GET", "/images/{name*}/json", "none", False, "1.18", None),
    # "json" only because docker-py sends "{}" here (see admission.admit_body).
    ("image.push", "POST", "/images/{name*}/push", "json", False, "1.18", None),
    ("image.tag", "POST", "/images/{name*}/tag", "none", False, "1.18", None),
    ("image.delete", "DELETE", "/images/{name*}", "none", False, "1.18", None),
    ("distribution.inspect", "GET", "/distribution/{name*}/json", "none", False, "1.30", None),
    # networks (moby also registers GET /networks/, canonicalised to /networks)
    ("network.list", "GET", "/networks", "none", False, "1.21", None),
    ("network.create", "POST", "/networks/create", "json", False, "1.21", None),
    ("network.prune", "POST", "/networks/prune", "none", False, "1.25", None),
    ("network.inspect", "GET", "/networks/{id}", "none", False, "1.21", None),
    ("network.connect", "POST", "/networks/{id}/connect", "json", False, "1.21", None),
    ("network.disconnect", "POST", "/networks/{id}/disconnect", "json", False, "1.21", None),
    ("network.delete", "DELETE", "/networks/{id}", "none", False, "1.21", None),
    # volumes
    ("volume.list", "GET", "/volumes", "none", False, "1.21", None),
    ("volume.create", "POST", "/volumes/create", "json", False, "1.21", None),
    ("volume.prune", "POST", "/volumes/prune", "none", False, "1.25", None),
    ("volume.inspect", "GET", "/volumes/{name}", "none", False, "1.21", None),
    ("volume.update", "PUT", "/volumes/{name}", "json", False, "1.42", None),
    ("volume.delete", "DELETE", "/volumes/{name}", "none", False, "1.21", None),
    # plugins
    ("plugin.list", "GET", "/plugins", "none", False, "1.25", None),
    ("plugin.privileges", "GET", "/plugins/privileges", "none", False, "1.25", None),
    ("plugin.pull", "POST", "/plugins/pull", "json", False, "1.25", None),
    ("plugin.create", "POST", "/plugins/create", "stream", False, "1.25", None),
    ("plugin.inspect", "GET", "/plugins/{name*}/json", "none", False, "1.25", None),
    ("plugin.enable", "POST", "/plugins/{name*}/enable", "none", False, "1.25", None),
    ("plugin.disable", "POST", "/plugins/{name*}/disable", "none", False, "1.25", None),
    # No client sends a body here; "stream" lets one through unread, as for create.
    ("plugin.push", "POST", "/plugins/{name*}/push", "stream", False, "1.25", None),
    ("plugin.upgrade", "POST", "/plugins/{name*}/upgrade", "json", False, "1.26", None),
    ("plugin.set", "POST", "/plugins/{name*}/set", "json", False, "1.25", None),
    ("plugin.delete", "DELETE", "/plugins/{name*}", "none", False, "1.25", None),
    # swarm
    ("swarm.inspect", "GET", "/swarm", "none", False, "1.24", None),
    ("swarm.init", "POST", "/swarm/init", "json", False, "1.24", None),
    ("swarm.join", "POST", "/swarm/join", "json", False, "1.24", None),
    ("swarm.leave", "POST", "/swarm/leave", "none", False, "1.24", None),
    ("swarm.update", "POST", "/swarm/update", "json", False, "1.24", None),
    ("swarm.unlock", "POST", "/swarm/unlock", "json", False, "1.25", None),
    ("swarm.unlockkey", "GET", "/swarm/unlockkey", "none", False, "1.25", None),
    ("node.list", "GET", "/nodes", "none", False, "1.24", None),
    ("node.inspect", "GET", "/nodes/{id}", "none", False, "1.24", None),
    ("node.update", "POST", "/nodes/{id}/update", "json", False, "1.24", None),
    ("node.delete", "DELETE", "/nodes/{id}", "none", False, "1.24", None),
    ("service.list", "GET", "/services", "none", False, "1.24", None),
    ("service.create", "POST", "/services/create", "json", False, "1.24", None),
    ("service.inspect", "GET", "/services/{id}", "none", False, "1.24", None),
    ("service.update", "POST", "/services/{id}/update", "json", False, "1.24", None),
    ("service.logs", "GET", "/services/{id}/logs", "none", False, "1.29", None),
    ("service.delete", "DELETE", "/services/{id}", "none", False, "1.24", None),
    ("task.list", "GET", "/tasks", "none", False, "1.24", None),
    ("task.inspect", "GET", "/tasks/{id}", "none", False, "1.24", None),
    ("task.logs", "GET", "/tasks/{id}/logs", "none", False, "1.29", None),
    ("secret.list", "GET", "/secrets", "none", False, "1.25", None),
    ("secret.create", "POST", "/secrets/create", "json", False, "1.25", None),
    ("secret.inspect", "GET", "/secrets/{id}", "none", False, "1.25", None),
    ("secret.update", "POST", "/secrets/{id}/update", "json", False, "1.25", None),
    ("secret.delete", "DELETE", "/secrets/{id}", "none", False, "1.25", None),
    ("config.list", "GET", "/configs", "none", False, "1.30", None),
    ("config.create", "POST", "/configs/create", "json", False, "1.30", None),
    ("config.inspect", "GET", "/configs/{id}", "none", False, "1.30", None),
    ("config.update", "POST", "/configs/{id}/update", "json", False, "1.30", None),
    ("config.delete", "DELETE", "/configs/{id}", "none", False, "1.30", None),
)

_PARAM = re.compile(r"\{([a-z]+)(\*?)\}")


def _compile(template: str) -> tuple[re.Pattern[str], re.Pattern[str], tuple[str, ...]]:
    """Strict and daemon-like (greedy) regexes for a template."""
    strict, loose, names, pos = [], [], [], 0
    for m in _PARAM.finditer(template):
        lit = re.escape(template[pos:m.start()])
        strict.append(lit)
        loose.append(lit)
        names.append(m.group(1))
        strict.append(f"(?P<{m.group(1)}>[^/]+(?:/[^/]+)*)" if m.group(2) else
                      f"(?P<{m.group(1)}>[^/]+)")
        loose.append(".*")
        pos = m.end()
    strict.append(re.escape(template[pos:]))
    loose.append(re.escape(template[pos:]))
    return re.compile("".join(strict)), re.compile("".join(loose)), tuple(names)


def _build() -> tuple[Route, ...]:
    routes = []
    for ident, method, template, body, hijack, since, until in _TABLE:
        pattern, loose, names = _compile(template)
        ep = Operation(ident, method, template.replace("*}", "}"), body, hijack, since, until)
        routes.append(Route(ep, pattern, loose, names))
    return tuple(routes)


ROUTES: tuple[Route, ...] = _build()
"""All routes, in the daemon's matching order (first match wins)."""

ENDPOINTS: dict[str, Operation] = {r.endpoint.id: r.endpoint for r in ROUTES}
"""Endpoints by id."""

_BY_LITERAL: dict[tuple[str, str], Route] = {
    (r.endpoint.method, r.endpoint.template): r for r in ROUTES if not r.params
}


def _first_segment(path: str) -> str:
    return path.split("/", 2)[1] if path.startswith("/") else ""


_BY_FIRST: dict[str, tuple[Route, ...]] = {
    first: tuple(r for r in ROUTES if _first_segment(r.endpoint.template) == first)
    for first in {_first_segment(r.endpoint.template) for r in ROUTES}
}
"""Routes by their first (always literal) segment, in table order."""


@dataclass(frozen=True, slots=True)
class RouteMatch:
    """Outcome of matching a path: exactly one of the fields explains it.

    Attributes:
        route: the matching route, with ``params``.
        params: decoded path parameters.
        allowed: when no route matched for this method but some did for
            others, their methods (405).
        daemon_routes: true when no route matched but the daemon's greedy
            patterns would (403, deliberately unsupported).
    """

    route: Route | None = None
    params: dict[str, str] | None = None
    allowed: tuple[str, ...] = ()
    daemon_routes: bool = False


_UNSUPPORTED: tuple[tuple[str | None, re.Pattern[str]], ...] = (
    # moby system router: OPTIONS /{anyroute:.*} answers CORS preflights.
    ("OPTIONS", re.compile(r"/.*")),
    # moby debug router (daemon started with debug): /debug/vars, /debug/pprof/...
    (None, re.compile(r"/debug(/.*)?")),
    # moby checkpoint router (experimental daemons):
    # GET/POST /containers/{name}/checkpoints, DELETE .../checkpoints/{checkpoint}.
    (None, re.compile(r"/containers/[^/]+/checkpoints(/[^/]+)?")),
)
"""Routes some daemons serve that dockgate deliberately does not (403, not 404)."""


def match(method: str, path: str) -> RouteMatch:
    """Find the route for ``method`` and a canonical decoded ``path``."""
    for only, pattern in _UNSUPPORTED:
        if (only is None or only == method) and pattern.fullmatch(path):
            return RouteMatch(daemon_routes=True)
    hit = _BY_LITERAL.get((method, path))
    if hit is not None:
        return RouteMatch(hit, {})
    candidates = _BY_FIRST.get(_first_segment(path), ())
    allowed: list[str] = []
    for r in candidates:
        m = r.pattern.fullmatch(path)
        if m is None:
            continue
        if r.endpoint.method == method:
            return RouteMatch(r, m.groupdict())
        if r.endpoint.method not in allowed:
            allowed.append(r.endpoint.method)
    # A route of this method that the daemon's greedy pattern matches wins over
    # 405, as in mux (POST /containers/a/b/start is the daemon's start of "a/b",
    # whatever DELETE /containers/{name:.*} matches too).
    for r in candidates:
        if r.endpoint.method == method and r.loose.fullmatch(path):
            return RouteMatch(daemon_routes=True)
    if allowed:
        return RouteMatch(allowed=tuple(allowed))
    return RouteMatch()

