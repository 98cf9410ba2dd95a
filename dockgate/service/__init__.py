"""Running dockgate as a service: ``config`` and ``listener_spec`` (what
the operator asked for, pure), ``listeners`` and ``tlshalfclose`` (Twisted
endpoints), ``tap`` (the twistd service), ``admin`` and ``metrics`` (health and
Prometheus), ``oplog`` (operational logging), ``compat`` (docker-socket-proxy's
environment as a policy).
"""
