"""Admission: turns a parsed request head (and, for JSON endpoints, its body)
into the one CanonicalRequest that is decided and forwarded, or refuses it.

Order of checks for a head, each with its own status:

1. the request-target (``target.parse_target``): 400 for anything the daemon
   could read differently;
2. the API version: a ``/vX.Y`` prefix outside [MIN_API_VERSION,
   MAX_API_VERSION] is 403 (dockgate has no schemas for it); no prefix means
   ``ctx.daemon_version``, the version the daemon applies itself;
3. the route (``routes.match``): 404 where the daemon would not route the path
   either, 403 where the daemon would but dockgate deliberately does not,
   405 for a known path with another method (the daemon itself answers 404
   "page not found" there: its mux sends method mismatches to the not-found
   handler; 405 tells the user more), 404 for an operation after its
   ``until`` version (as the daemon does for the removed
   ``/containers/{id}/copy``) or absent from the version's schema snapshot;
4. the query (``query.canonical_query``) against the version's schema: 400;
5. headers: hop-by-hop, framing and ``Connection``-named headers are dropped;
   a ``Content-Type`` Go would read as a form (``application/x-www-form-urlencoded``
   or ``multipart/form-data``) is refused on every endpoint, and so is one with
   bytes outside printable ASCII (see ``_form_media_type``);
   a ``json`` endpoint's non-empty body must be labelled ``application/json``
   (checked in ``admit_body``, 400).

``admit_body`` then decodes, canonicalises and re-serialises a JSON body.

Container create and the deprecated top-level HostConfig fields: up to engine
24 (moby ``runconfig.ContainerConfigWrapper`` before the API 1.44 types) the
wrapper embedded ``*container.HostConfig`` next to the ``HostConfig`` member.
When ``HostConfig`` was absent, top-level HostConfig fields (``Privileged``,
``Binds``...) *were* the host config; when present, only top-level
``Memory``, ``MemorySwap``, ``CpuShares``, ``CpusetCpus`` and ``VolumeDriver``
were merged into it where it left them zero, and ``Cpuset`` filled an empty
``CpusetCpus``.  Engine 20.10 does this for every API version; engine 28 no
longer does.  Low-level clients still send such fields (docker-py's
``create_container(runtime=...)`` puts ``Runtime`` at top level), so instead of
refusing them ``admit_body`` moves them into ``HostConfig`` exactly as engine
20.10 reads them, and drops those it ignores.  A policy reading
``HostConfig.Privileged`` thus sees what any engine would act on, and the
forwarded body has no top-level HostConfig fields left.
"""

from __future__ import annotations

import re
from collections.abc import Generator, Sequence
from dataclasses import dataclass, replace
from typing import TypeVar

from dockgate.admission.jsonstrict import Pairs, dumps, dumps_spans, go_fold, loads
from dockgate.admission.query import canonical_query
from dockgate.admission.routes import match
from dockgate.admission.schemas import SnapshotSchemas, schemas_for
from dockgate.admission.target import escape_path, parse_target
from dockgate.admission.validation import Walker
from dockgate.admission.versions import (
    MAX_API_VERSION,
    MIN_API_VERSION,
    compare_versions,
    is_known_version,
    parse_version,
)
from dockgate.errors import BadRequest, Forbidden, MethodNotAllowed, NotFound
from dockgate.http1 import wire
from dockgate.model import CanonicalRequest

NEVER_FORWARDED = frozenset(
    {name.decode("latin-1") for name in wire.HOP_BY_HOP} | {"content-length", "host", "expect"})
"""Headers that never pass through: the connection's own (``wire.HOP_BY_HOP``, the
one hop-by-hop set) and framing, Host and Expect, which the I/O layer writes anew."""

T = TypeVar("T")

_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE"})


@dataclass(frozen=True, slots=True)
class ApiContext:
    """What admission needs to know about the deployment.

    Attributes:
        daemon_version: API version used when a request names none (the
            daemon's own default version, as it applies it; set it from the
            daemon's ``Api-Version``).  The default, MAX_API_VERSION, selects
            the newest schemas, a superset of older ones, so an unversioned
            request from a client is not refused for a field an older schema
            lacks.
        max_json_body: cap on a JSON body that must be buffered (413 above).
    """

    daemon_version: str = MAX_API_VERSION
    max_json_body: int = 1 << 20


def effective_version(request: CanonicalRequest, ctx: ApiContext) -> str:
    """The API version a request is validated against: its prefix, else the daemon's."""
    return request.version or clamp_default(ctx.daemon_version)


def clamp_default(version: str) -> str:
    """The daemon's default version, limited to what dockgate has schemas for."""
    if parse_version(version) is None or compare_versions(version, MAX_API_VERSION) > 0:
        return MAX_API_VERSION
    if compare_versions(version, MIN_API_VERSION) < 0:
        return MIN_API_VERSION
    return version


def _headers(
    headers: Sequence[tuple[bytes, bytes]],
) -> tuple[tuple[tuple[str, str], ...], str | None]:
    """End-to-end headers to forward, and the Content-Type value if any."""
    named: set[str] = set()
    decoded: list[tuple[str, str]] = []
    content_type: str | None = None
    for raw_name, raw_value in headers:
        name = raw_name.decode("latin-1").lower()
        value = raw_value.decode("latin-1")
        decoded.append((name, value))
        if name == "connection":
            named.update(t.decode("latin-1") for t in wire.tokens(raw_value))
    kept: list[tuple[str, str]] = []
    for name, value in decoded:
        if name in NEVER_FORWARDED or name in named:
            continue
        if name == "content-type":
            if content_type is not None:
                raise BadRequest("more than one Content-Type header")
            content_type = value
        kept.append((name, value))
    return tuple(kept), content_type


_FORMS = frozenset({"application/x-www-form-urlencoded", "multipart/form-data"})
"""Media types whose body Go's ``net/http`` reads into ``r.Form`` beside the query:
``ParseForm`` reads an urlencoded POST or PUT body (its values come *before* the
query's), and ``FormValue`` (moby's build handler reads its options with it before
any ``ParseForm``) also parses a multipart body (its values after the query's, so
they set every parameter the query left out)."""

_PRINTABLE = re.compile("[\t\x20-\x7e]*")


def _media_type(value: str) -> str:
    """The lower-cased media type of a Content-Type value, without parameters."""
    return value.partition(";")[0].strip().lower()


def _form_media_type(value: str) -> bool:
    """Whether a Content-Type value may make the daemon read the body as form values.

    Go's ``mime.ParseMediaType`` lower-cases and trims the media type with
    Unicode rules on the UTF-8 text (``strings.ToLower`` turns U+0130 into
    ``i``, ``strings.TrimSpace`` drops U+00A0), so ``appl\u0130cation/...`` is
    a form to the daemon while the header's bytes spell something else; a value
    with any byte outside printable ASCII therefore counts as one (no Docker
    client sends such a value).
    """
    return _PRINTABLE.fullmatch(value) is None or _media_type(value) in _FORMS


def is_json_media_type(value: str) -> bool:
    """moby's ``httputils.CheckForJSON`` reading: ``mime.ParseMediaType`` and
    ``application/json`` (case-insensitive), parameters allowed."""
    _, _, params = value.partition(";")
    if _media_type(value) != "application/json":
        return False
    for param in params.split(";"):
        if not param.strip():
            continue
        key, eq, _val = param.partition("=")
        key = key.strip()
        if not eq or not key or any(c in key for c in ' "\t()<>@,;:/[]?='):
            return False
    return True


def admit_head(
    method: str, target: bytes, headers: Sequence[tuple[bytes, bytes]], ctx: ApiContext
) -> CanonicalRequest:
    """Route and canonicalise a request head; raise a DockgateError to refuse it."""
    method = method.upper()
    parsed = parse_target(target)
    if parsed.version is not None and not is_known_version(parsed.version):
        raise Forbidden(f"API version {parsed.version} is not supported by dockgate "
                        f"(supported: {MIN_API_VERSION} to {MAX_API_VERSION})",
                        reason="unknown-version")
    version = parsed.version or clamp_default(ctx.daemon_version)
    path = parsed.path
    if path == "/networks/":
        # moby registers GET /networks/ as an alias of GET /networks.
        path = "/networks"
    elif len(path) > 1 and path.endswith("/"):
        raise BadRequest("request path ends with '/'; the daemon routes such paths "
                         "differently from the path without it")
    found = match(method, path)
    if found.route is None and not found.daemon_routes and method not in _METHODS:
        raise MethodNotAllowed(f"method {method} is not used by the Engine API")
    if found.route is None:
        if found.allowed:
            raise MethodNotAllowed(f"{method} is not allowed on {path} "
                                   f"(allowed: {', '.join(found.allowed)})")
        if found.daemon_routes:
            raise Forbidden(f"{method} {path} is not an operation dockgate supports",
                            reason="unknown-route")
        raise NotFound(f"page not found: {method} {path}", reason="not-found")
    endpoint = found.route.endpoint
    if endpoint.until is not None and compare_versions(version, endpoint.until) > 0:
        raise NotFound(f"{endpoint.id} was removed after API {endpoint.until}",
                       reason="not-found")
    schemas = schemas_for(version)
    if not schemas.has_endpoint(endpoint.id):
        # ``since`` is not enforced by itself: daemons serve most routes at any
        # version they accept.  Only an operation the version's schema snapshot
        # lacks (nothing to validate it against) is refused.
        raise NotFound(f"{endpoint.id} is not part of API {version} (it appeared in "
                       f"{endpoint.since})", reason="not-found")
    query = canonical_query(parsed.raw_query, schemas.query_spec(endpoint.id),
                            schemas.query_walkers(endpoint.id))
    kept, content_type = _headers(headers)
    if content_type is not None and _form_media_type(content_type):
        # A streamed body the daemon reads into r.Form could replace or add to
        # the parameters the decision saw.
        raise BadRequest(f"Content-Type {content_type!r} is refused: the daemon would, or "
                         "could, read the body as query parameters (form media types "
                         "and bytes outside printable ASCII are refused)")
    return CanonicalRequest(
        method=method,
        endpoint=endpoint,
        path=escape_path(path),
        version=parsed.version,
        params=found.params or {},
        query=query,
        headers=kept,
    )


HEAVY_BODY = 16 << 10
"""Bytes above which a JSON body is admitted in steps (``admit_body_steps``).

Decoding, checking and re-encoding cost 15 to 25 ms per MB of body on the
reactor thread (the 1 MB create of 19990 labels in
``benchmarks/bench_chunks.py``), so a body under this size costs well under
a millisecond: taken inline, as nearly every body Docker clients send is (a
create is a few KB), since a round trip to a worker process would cost more.
Larger ones are admitted in a worker process (``proxy.workers``), or with
none a step at a time between other clients' requests (``proxy.turns``).
"""


def admit_body(request: CanonicalRequest, body: bytes, ctx: ApiContext) -> CanonicalRequest:
    """Decode and canonicalise a JSON body; raise a DockgateError to refuse it.

    An empty body is accepted (as "no body") wherever the daemon accepts one:
    every JSON endpoint whose schema makes the body optional.
    """
    return run_steps(admit_body_steps(request, body, ctx))


def run_steps(steps: Generator[None, None, T]) -> T:
    """Run a generator of steps (``admit_body_steps`` and the like) to its end at once."""
    while True:
        try:
            next(steps)
        except StopIteration as done:
            result: T = done.value
            return result


def admit_body_steps(
    request: CanonicalRequest, body: bytes, ctx: ApiContext
) -> Generator[None, None, CanonicalRequest]:
    """``admit_body`` as a generator that pauses between its costly steps.

    It yields after decoding and after the schema walk (each of them, and the
    encoding after them, costs a few milliseconds for a body near the 1 MB
    cap) and returns the admitted request; a refusal is raised from the step
    that finds it.  The same checks in the same order as ``admit_body``,
    which runs it to the end at once.
    """
    schemas = schemas_for(effective_version(request, ctx))
    walker = schemas.body_walker(request.endpoint.id)
    if body.strip(b" \t\r\n") == b"":
        if walker is not None and schemas.body_required(request.endpoint.id):
            raise BadRequest(f"{request.endpoint.id} requires a JSON body")
        return replace(request, body=None, body_bytes=None)
    if walker is None:
        if len(body) <= 7:
            # Handlers without a body schema ignore the body, and some clients
            # send an empty object anyway: docker-py's _post_json sends "{}" to
            # POST /images/{name}/push, and moby postContainersStart explicitly
            # ignores bodies of 7 bytes or fewer ("a non-nil JSON object is at
            # least 7 characters").  Such a body is forwarded as no body.
            # Anything else (a HostConfig on start, refused by daemons from API
            # 1.24) is refused.
            value = loads(body)
            if value is None or value == []:
                return replace(request, body=None, body_bytes=None)
        raise BadRequest(f"{request.endpoint.id} takes no request body")
    # The media type is checked only for a non-empty body: the moby client
    # labels every bodiless POST "text/plain" (client/request.go buildRequest),
    # and handlers ignore the type when they read no body.
    content_type = next((v for n, v in request.headers if n == "content-type"), None)
    if content_type is None or not content_type.strip():
        raise BadRequest("a JSON body needs Content-Type: application/json "
                         "(the daemon refuses it otherwise)")
    if not is_json_media_type(content_type):
        raise BadRequest(f"Content-Type {content_type!r} is not application/json")
    try:
        decoded = loads(body)
        yield
        if request.endpoint.id == "container.create" and isinstance(decoded, Pairs):
            value = _create_body(decoded, schemas, walker)
        else:
            value = walker(decoded, None)
        yield
        if len(body) > HEAVY_BODY:  # worth the spans: see CanonicalRequest.body_members
            encoded, spans = dumps_spans(value)
        else:
            encoded, spans = dumps(value), None
    except RecursionError:
        raise BadRequest("JSON body is nested too deeply") from None
    members = (value, encoded, spans) if spans is not None else None
    return replace(request, body=value, body_bytes=encoded, body_members=members)


_MERGED = ("Memory", "MemorySwap", "CpuShares", "CpusetCpus", "VolumeDriver")
"""Top-level fields engine 20.10 merges into a present HostConfig (getHostConfig)."""


_CREATE_FIELDS: dict[str, tuple[frozenset[str], frozenset[str]]] = {}
"""Per snapshot: folded top-level create fields, folded HostConfig fields + cpuset."""


def _create_body(decoded: Pairs, schemas: SnapshotSchemas, walker: Walker) -> object:
    """Canonicalise a container-create body, lifting legacy top-level
    HostConfig fields the way engine 20.10's ``getHostConfig`` reads them."""
    sets = _CREATE_FIELDS.get(schemas.version)
    if sets is None:
        sets = _CREATE_FIELDS[schemas.version] = (
            frozenset(go_fold(n) for n in schemas.body_fields("container.create")),
            frozenset(go_fold(n) for n in schemas.definition_fields("HostConfig"))
            | {"cpuset"},
        )
    own, host = sets
    rest, legacy, cpuset = Pairs(), Pairs(), Pairs()
    for key, item in decoded:
        folded = go_fold(key)
        if folded in own or folded not in host:
            rest.append((key, item))
        elif folded == "cpuset":
            cpuset.append((key, item))
        else:
            legacy.append((key, item))
    value = walker(rest, None)
    if not legacy and not cpuset:
        return value
    assert isinstance(value, dict)
    lifted = schemas.definition_walker("HostConfig")(legacy, None) if legacy else {}
    if len(cpuset) > 1:
        raise BadRequest("body: several keys set field 'Cpuset' (the daemon matches keys "
                         "case-insensitively, last wins)")
    cpus = cpuset[0][1] if cpuset else None
    if cpus is not None and not isinstance(cpus, str):
        raise BadRequest("Cpuset: expected string")
    hc = value.get("HostConfig")
    if hc is None:
        if not legacy:
            return value  # no host config at all: Cpuset is ignored
        hc = lifted
    else:
        for name in _MERGED:
            if lifted.get(name) and not hc.get(name):
                hc[name] = lifted[name]
    if cpus and not hc.get("CpusetCpus"):
        hc["CpusetCpus"] = cpus
    value["HostConfig"] = hc
    return value
