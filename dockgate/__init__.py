"""dockgate: a protocol-level reverse proxy for the Docker Engine API.

Every request is parsed, routed, validated and decided before a byte of it
reaches the daemon.  The pure core (parsing: ``wire``, ``target``, ``query``,
``http1``, ``http1_server``, ``listener_spec``; routing and validation:
``routes``, ``versions``, ``jsonstrict``, ``validation``, ``schemas``,
``admission``; deciding: ``decision``, ``policy``, ``tenancy``, ``scoping``;
records: ``model``, ``errors``, the ``audit_*`` modules but ``audit`` and
``audit_config``) has no reactor and no transport.  The Twisted I/O lives in
``protocol``, ``upstream``, ``splice``, ``gate``, ``binding``, ``peer``,
``listeners``, ``tlshalfclose``, ``admin``, ``audit``, ``oplog``, ``tap``,
``cli`` and ``reactor``, with the fast-I/O devices ``writethrough``,
``kernelsplice`` and ``fastio``.  ``tests/unit/test_core_fence.py`` holds the
full lists and checks that the core never loads Twisted or pyOpenSSL.
"""

__version__ = "0.1.0"
__all__ = ["__version__"]
