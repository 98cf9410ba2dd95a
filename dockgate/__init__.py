"""dockgate: a protocol-level reverse proxy for the Docker Engine API.

Every request is parsed, routed, validated and decided before a byte of it
reaches the daemon.  The pure core (``errors``, ``model``, ``wire``,
``routes``, ``decision``, ``audit``) has no reactor and no transport; the
Twisted I/O lives in ``protocol``, ``upstream``, ``splice`` and ``tap``.
"""

__version__ = "0.1.0"
__all__ = ["__version__"]
