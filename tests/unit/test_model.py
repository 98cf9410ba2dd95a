"""The request model's values as they cross a process boundary."""

from __future__ import annotations

import pickle

from dockgate.admission.routes import ENDPOINTS
from dockgate.model import CanonicalRequest, Decision, Peer


def test_frozen_values_survive_pickle() -> None:
    """An operation, a peer, a canonical request and a decision naming it come back from
    pickle equal and of their own class, compiled (setup.py) as interpreted: admission
    workers receive requests this way."""
    request = CanonicalRequest("POST", ENDPOINTS["container.create"], "/containers/create",
                               query=(("name", "web"),), params={"id": "x"}, version="1.51")
    values = [ENDPOINTS["container.create"], Peer("unix:/run/dockgate.sock", "unix", "-",
                                                  uid=1000, groups=("docker",)),
              request, Decision("deny", "baseline", "no-privileged", "why", request=request)]
    for value in values:
        back = pickle.loads(pickle.dumps(value, protocol=5))  # noqa: S301 (our own bytes)
        assert back == value and type(back) is type(value)
    assert pickle.loads(pickle.dumps(values[3])).request == request  # noqa: S301
