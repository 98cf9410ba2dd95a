"""Answering for another tenant's object exactly as the daemon answers for a missing one.

A refusal that says "belongs to another tenant" tells the caller that the name
exists, and a refusal in dockgate's words makes clients take a different path
than for a missing object (the docker CLI pulls after a "No such image", and
``docker inspect`` goes on to the next object type after a 404).  So a
reference to an object the tenant may not use is answered with the daemon's
own answer for an object that does not exist.

The daemon's answer depends on the operation, the engine version and the API
version ("No such image: x:latest" on one endpoint, "no such image: x: No
such image: x:latest" on another engine, a raw-stream body for attach).  It
is not written down here: dockgate asks the daemon.  The request is replayed
with the reference replaced by a *stand-in*, a name that names nothing
(``stand_in``), and the daemon's answer is given back with the stand-in put
back to the caller's name (``MissingAnswer.from_replay``).  Only requests the
daemon refuses before it acts when that object is missing are replayed:
requests whose reference is in the path, and the few body and query
references for which the daemon looks the object up first (``replayable``).

The other body references of ``container.create`` are answered from a table
(``body_answer``): replaying a create could create something.  Those answers
were read from both engines and are pinned by tests/integration
(test_tenants.py::test_foreign_answers_like_missing).  Where the daemon would
not refuse at all (``NetworkMode: container:X`` and a network by name are
looked up only at start; a named volume is created), a missing and a foreign
object get the same refusal, in the daemon's words for a missing object at
start.

Names a request would *write* have no "missing" answer: the daemon creates
the object under that name (a volume it creates or mounts, an image name a
tag, build, commit or import writes).  A name another tenant holds is then
answered as taken (``name_in_use``), as the daemon answers a container or
network name that is taken, and never with whose it is.  A pull is the
exception: for a missing name the daemon asks the registry, so a pull of a
name another tenant holds is forwarded with a stand-in tag (``pull_stand_in``)
and the daemon's answer, whatever the registry said about a tag it does not
have, is given back with the caller's tag put back (``NamesBack``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass

from dockgate.errors import DockgateError
from dockgate.model import CanonicalRequest
from dockgate.tenancy.ownership import ObjectRef, query_values, with_query

STAND_IN_PREFIX = "dgmissing"
"""Stand-in names start with letters that are not hex digits: never an id prefix."""

_HEX = re.compile(r"(sha256:)?([0-9a-f]+)")


@dataclass(frozen=True, slots=True)
class StandIn:
    """A reference that names nothing, shaped like the caller's.

    Attributes:
        value: replaces the reference in the replayed request.
        shown: the part of ``value`` the daemon echoes and that differs.
        original: what ``shown`` stands for in the caller's reference.
        token: the random token it was made from (``forwarded`` makes it again).
    """

    value: str
    shown: str
    original: str
    token: str = ""


def stand_in(ref: ObjectRef, token: str) -> StandIn:
    """A stand-in for ``ref`` built from ``token`` (random lowercase hex, 32 digits).

    Containers, volumes, networks, exec instances and the rest get
    ``dgmissing<token>``, which the daemon echoes as written.  An image name
    keeps its registry, path, tag and digest and changes only its last path
    component, so the daemon normalises it the same way ("x" → "x:latest").
    An image id (hex, with or without ``sha256:``) gets other hex digits of
    the same length.
    """
    if ref.kind != "image":
        value = STAND_IN_PREFIX + token
        return StandIn(value, value, ref.ref)
    hexed = _HEX.fullmatch(ref.ref)
    if hexed is not None:
        digits = hexed.group(2)
        fresh = (token * (len(digits) // len(token) + 1))[:len(digits)]
        return StandIn((hexed.group(1) or "") + fresh, fresh, digits)
    name, at, digest = ref.ref.partition("@")
    slash = name.rfind("/")
    colon = name.rfind(":")
    end = colon if colon > slash else len(name)
    component = name[slash + 1:end]
    fresh = STAND_IN_PREFIX + token
    value = name[:slash + 1] + fresh + name[end:] + at + digest
    return StandIn(value, fresh, component)


def _go_json_text(text: str) -> str:
    """``text`` as Go's encoding/json writes it inside a string (HTML-safe escapes)."""
    inner = json.dumps(text, ensure_ascii=False)[1:-1]
    for ch, esc in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"),
                    ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        inner = inner.replace(ch, esc)
    return inner


def _daemon_json(message: str) -> bytes:
    """An error body as the daemon writes it: ``{"message":"..."}`` and a newline."""
    return b'{"message":"' + _go_json_text(message).encode() + b'"}\n'


class MissingAnswer(DockgateError):
    """The daemon's answer for a missing object, given for one the tenant may not use.

    Unlike dockgate's own refusals its body has no ``dockgate:`` prefix: it is
    the daemon's, byte for byte, apart from the name.  ``message`` (for the
    audit log) says what happened.
    """

    def __init__(self, status: int, content_type: bytes, raw: bytes, ref: ObjectRef,
                 reason: str) -> None:
        where = ref.key if ref.where != "path" else "path"
        super().__init__(f"{ref.kind} {ref.ref!r} ({where}) answered as missing",
                         status=status, reason=reason)
        self.content_type = content_type or b"application/json"
        self.raw = raw

    def body(self) -> bytes:
        return self.raw

    @classmethod
    def from_replay(cls, status: int, content_type: bytes, raw: bytes, ref: ObjectRef, *,
                    stands: Sequence[StandIn], reason: str) -> MissingAnswer:
        """The daemon's answer to the replayed request, with the caller's names put back
        (``ref`` is the first of the references the stand-ins replaced)."""
        json_body = content_type.split(b";")[0].strip() == b"application/json"
        body = raw
        for stand in stands:
            original = _go_json_text(stand.original) if json_body else stand.original
            body = body.replace(stand.shown.encode(), original.encode())
        return cls(status, content_type, body, ref, reason)


def replayable(endpoint_id: str, ref: ObjectRef) -> bool:
    """Whether the request may be replayed with a stand-in for ``ref``.

    Path references: every handler the daemon routes looks up its path object
    before it acts, so a stand-in makes it refuse, or succeed with nothing done
    (``volume rm -f``), except ``network connect`` of a created container.  Query
    and body references where the daemon also looks the object up first:
    ``commit``'s container, ``network connect``/``disconnect``'s container,
    ``network create``'s ``ConfigFrom.Network``, and the names of ``images/get``.
    Admin-only inspections a client probes are ``GET`` and always replayable
    (see ``probed``).
    """
    if endpoint_id == "network.connect" and ref.kind == "network":
        # A created container is connected to a missing network without a
        # lookup (it is looked up at start): the replay would store the stand-in.
        return False
    if ref.where == "path":
        return True
    if endpoint_id == "image.commit":
        return ref.key == "container"
    if endpoint_id in ("network.connect", "network.disconnect"):
        return ref.key == "Container"
    if endpoint_id == "network.create":
        # libnetwork looks the configuration network up before it makes anything.
        return ref.key == "ConfigFrom.Network"
    return endpoint_id == "image.get_all"


_CONTAINER_FIELDS_400 = frozenset({"VolumesFrom", "PidMode", "IpcMode"})


def body_answer(ref: ObjectRef, image_norm: str | None = None) -> MissingAnswer:
    """The answer for a ``container.create`` body reference to an object the tenant
    may not use (see the module docstring; read from both engines).

    ``image_norm`` is the daemon's own spelling of a missing image reference
    (``image_words`` reads it from a replayed inspection).
    """
    field = next((p for p in reversed(ref.path) if isinstance(p, str) and p), "")
    name = ref.ref
    if ref.kind == "image":
        message, status = f"No such image: {image_norm or name}", 404
    elif ref.kind == "container" and field in _CONTAINER_FIELDS_400:
        message, status = f"No such container: {name}", 400
    elif ref.kind == "container" and field == "Links":
        message, status = f"could not get container for {name}: No such container: {name}", 400
    elif ref.kind == "container":
        # NetworkMode container:X: the daemon looks it up at start only.
        message, status = f"No such container: {name}", 404
    elif ref.kind == "network":
        # NetworkMode NAME and EndpointsConfig keys: looked up at start.
        message, status = f"network {name} not found", 404
    else:
        message, status = f"get {name}: no such volume", 404
    return MissingAnswer(status, b"application/json", _daemon_json(message), ref,
                         "no-such-object")


_NO_SUCH_IMAGE = "No such image: "


def image_words(raw: bytes, stand: StandIn) -> str | None:
    """How the daemon spells a missing image, from its answer to ``GET /images/<stand-in>/json``.

    Both engines end the message with ``No such image: <normalised reference>``
    (20.10 puts the reference as written before it); the stand-in is put back.
    """
    try:
        message = json.loads(raw).get("message")
    except (ValueError, AttributeError):
        return None
    if not isinstance(message, str) or _NO_SUCH_IMAGE not in message:
        return None
    words = message.rsplit(_NO_SUCH_IMAGE, 1)[1]
    return words.replace(stand.shown, stand.original)


def name_in_use(ref: ObjectRef) -> DockgateError:
    """The answer for a name the request would write that the tenant may not use (409).

    Volumes and image names have no "name in use" answer on the daemon (it
    hands back the existing volume, or moves the image name), so dockgate
    gives one, the same for another tenant's object and an unowned one: it
    says the name is taken, as the daemon's container and network conflicts
    do, and nothing about whose it is.
    """
    kind = "volume" if ref.kind == "volume" else "image"
    return DockgateError(f"{kind} name {ref.ref!r} is already in use", status=409,
                         reason="name-in-use")


def pull_stand_in(request: CanonicalRequest, token: str) -> tuple[CanonicalRequest, StandIn]:
    """``request`` (a pull, ``fromImage`` with ``tag``) asking for a tag that names nothing.

    The repository stays, so the daemon asks the same registry about the same
    repository, as for a missing name; only the tag (or the digest) differs,
    and the registry has no such tag.  The stand-in tag is ``dgmissing`` and
    ``token``; a digest gets other hex digits of the same length.
    """
    source = next((v for v in query_values(request, "fromImage")), "")
    tag = next((v for v in query_values(request, "tag")), "")
    name, at, digest = source.partition("@")
    if not at and tag.startswith("sha256:"):
        at, digest, tag = "@", tag, ""
    if at:
        algo, _, digits = digest.partition(":")
        fresh = (token * (len(digits) // len(token) + 1))[:len(digits)]
        stand = StandIn(f"{algo}:{fresh}", fresh, digits, token)
        if "@" not in source:  # ?tag=sha256:... beside a plain fromImage
            return with_query(request, "tag", [stand.value]), stand
        return with_query(request, "fromImage", [f"{name}@{stand.value}"]), stand
    fresh = STAND_IN_PREFIX + token
    if tag:
        return with_query(request, "tag", [fresh]), StandIn(fresh, fresh, tag, token)
    slash, colon = name.rfind("/"), name.rfind(":")
    if colon > slash:
        return (with_query(request, "fromImage", [name[:colon + 1] + fresh]),
                StandIn(fresh, fresh, name[colon + 1:], token))
    # No tag at all: the daemon pulls every tag of the repository.  Ask for one
    # tag it does not have instead (never every tag of a name someone holds).
    return with_query(request, "tag", [fresh]), StandIn(fresh, fresh, "latest", token)


def forwarded(request: CanonicalRequest, stands: Sequence[StandIn]) -> CanonicalRequest:
    """``request`` as it is forwarded: each pull's stand-in in place of the caller's tag.

    Applied after the decision, which reads the caller's own reference: a
    policy that names tags must decide a pull of a held name as it decides
    the same pull of a missing one.
    """
    for stand in stands:
        request, _ = pull_stand_in(request, stand.token)
    return request


class NamesBack:
    """Rewrites a streamed answer so each stand-in reads as the caller's name again.

    For a request forwarded with stand-ins (``pull_stand_in``): the daemon's
    answer, a JSON progress stream or an error, names the stand-in; the client
    must see its own name.  Stand-ins are ASCII letters and digits that
    nothing else contains, and a stand-in split between two chunks is held
    back until the next one.  The answer's length changes: the I/O layer
    drops its Content-Length.
    """

    def __init__(self, stands: Sequence[StandIn]) -> None:
        self.pairs = [(s.shown.encode(), s.original.encode()) for s in stands]
        self.keep = max((len(shown) for shown, _ in self.pairs), default=1) - 1
        self.pending = b""

    def _swap(self, data: bytes) -> bytes:
        for shown, original in self.pairs:
            data = data.replace(shown, original)
        return data

    def feed(self, data: bytes) -> bytes:
        """What may be sent of the answer so far (all but a possible stand-in's start)."""
        data = self._swap(self.pending + data)
        cut = max(len(data) - self.keep, 0)
        # Hold back only a tail that could begin a stand-in.
        while cut < len(data) and not any(shown.startswith(data[cut:])
                                          for shown, _ in self.pairs):
            cut += 1
        self.pending = data[cut:]
        return data[:cut]

    def finish(self) -> bytes:
        """The rest, at the end of the answer."""
        rest, self.pending = self.pending, b""
        return rest
