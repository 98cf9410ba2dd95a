"""dockgate: a protocol-level reverse proxy for the Docker Engine API.

Every request is parsed, routed, validated and decided before a byte of it
reaches the daemon.  The subsystems are packages: ``http1`` (the sans-IO
HTTP/1.1 codec), ``admission`` (a request to one ``CanonicalRequest``),
``policy`` (deciding), ``tenancy``, ``buildctx`` and ``buildkit`` (builds),
``audit``, then the Twisted edge ``proxy``, the tuning ``fastio``, ``service``
(listeners, config, the twistd service) and ``cli``.  The pure core has no
reactor and no transport; ``tests/unit/test_core_fence.py`` lists every module
as core or I/O and checks that the core never loads Twisted or pyOpenSSL.
docs/architecture.md draws a request's path through them.
"""

__version__ = "0.1.0"
__all__ = ["__version__"]
