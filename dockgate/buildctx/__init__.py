"""Classic build contexts: the tar dockerd unpacks, and the Dockerfile inside it.

``tarscan`` reads the streamed body as moby unpacks it, ``context`` finds
the Dockerfile the daemon will read (and notices entries that would change
it), ``dockerfile`` turns it into facts (images, URL sources).  All pure.
"""

from dockgate.buildctx.context import ContextCheck
from dockgate.buildctx.dockerfile import DockerfileFacts, parse
from dockgate.buildctx.tarscan import ContextError

__all__ = ["ContextCheck", "ContextError", "DockerfileFacts", "parse"]
