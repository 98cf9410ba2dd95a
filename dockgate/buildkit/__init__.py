"""BuildKit's gRPC, mediated: what a ``docker buildx build`` asks the daemon to do.

Since engine 23 the docker CLI builds with BuildKit: it upgrades ``POST
/grpc`` and ``POST /session`` to h2c and speaks gRPC on them.  On ``/grpc``
the client sends ``Control/Solve`` (the build: frontend, its options, the
entitlements it asks for, the exporters) and, through the gateway,
``LLBBridge/Solve`` and ``NewContainer`` (the LLB graph a frontend produced);
on ``/session`` the daemon pulls the build context (fsutil packets) and
secrets from the client.  Everything the daemon does as root for the build
(pull images, fetch git and http sources, run steps with the host network or
as insecure) is named in those messages, so dockgate decodes them and judges
them with the ``build`` control before they reach the daemon.

Pure modules (no Twisted): ``messages`` (protobuf classes built from
descriptors written for dockgate), ``solve`` (decoders and the dataclasses
the policy reads).  The wire half (HTTP/2 relay, gRPC framing) lives beside
them and is the only part that does I/O.
"""
