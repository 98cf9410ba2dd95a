"""Volumes and networks with the CLI: create, ls, use, rm."""

from __future__ import annotations

import random

import pytest
from support.engines import IMAGE, Engine, unique

pytestmark = pytest.mark.engine


def test_volume_create_ls_use_rm(engine: Engine) -> None:
    """A volume created through dockgate is listed by label, keeps data between containers, and is
    removed."""
    vol = unique("vol")
    engine.docker("volume", "create", "--label", "dgtest=1", vol)
    listed = engine.docker("volume", "ls", "--filter", "label=dgtest=1", "--format", "{{.Name}}")
    assert vol in listed.stdout.split()
    mount = f"{vol}:/data"
    engine.docker(
        "run", "--rm", "--network", "none", "-v", mount, IMAGE, "sh", "-c", f"echo {vol} > /data/f"
    )
    out = engine.docker("run", "--rm", "--network", "none", "-v", mount, IMAGE, "cat", "/data/f")
    assert out.stdout == f"{vol}\n"
    engine.docker("volume", "rm", vol)
    assert vol not in engine.docker("volume", "ls", "--format", "{{.Name}}").stdout.split()
    assert engine.docker("volume", "inspect", vol, check=False).returncode != 0


def test_network_create_ls_inspect_rm(engine: Engine) -> None:
    """An internal network created through dockgate is listed, inspects with its subnet, and is
    removed."""
    net = unique("net")
    subnet = f"127.{random.randint(100, 250)}.{random.randint(0, 255)}.0/24"  # noqa: S311
    engine.docker("network", "create", "--internal", "--subnet", subnet, net)
    listed = engine.docker("network", "ls", "--format", "{{.Name}} {{.Driver}}").stdout
    assert f"{net} bridge" in listed.splitlines()
    inspected = engine.docker(
        "network", "inspect", "-f", "{{.Internal}} {{range .IPAM.Config}}{{.Subnet}}{{end}}", net
    )
    assert inspected.stdout.split() == ["true", subnet]
    engine.docker("network", "rm", net)
    assert net not in engine.docker("network", "ls", "--format", "{{.Name}}").stdout.split()
