"""The docker CLI under a real pseudo-terminal: run -it, exec -it, attach with detach keys."""

from __future__ import annotations

import json

import pytest
from support.engines import IMAGE, Engine, unique
from support.terminal import Terminal

pytestmark = pytest.mark.engine

PROMPT = r"/ # "


def await_size(term: Terminal, rows: int, cols: int) -> None:
    """The CLI resizes the container's tty just after start or exec start; wait for it."""
    term.send(
        f'n=0; until [ "$(stty size 2>/dev/null)" = "{rows} {cols}" ] || [ $n -gt 100 ]; '
        "do n=$((n+1)); sleep 0.1; done; echo size-$(stty size | tr ' ' x)-ok\r"
    )
    term.expect(rf"size-{rows}x{cols}-ok")


def test_run_it_interactive_shell(engine: Engine) -> None:
    """docker run -it gives a shell on a real pty through dockgate, sized to the terminal, and
    returns the shell's exit code."""
    name = unique("runit")
    argv = [engine.cli, "run", "-it", "--rm", "--network", "none", "--name", name, IMAGE, "sh"]
    with Terminal(argv, engine.env) as term:
        term.expect(PROMPT)
        await_size(term, 24, 80)
        term.send("tty; echo out-$((6*7))\r")
        term.expect(r"/dev/pts/\d+")
        term.expect(r"out-42")
        term.send("exit 5\r")
        assert term.wait(30) == 5


def test_exec_it_in_running_container(engine: Engine) -> None:
    """docker exec -it gives an interactive shell sized to the terminal, reads typed input, and
    ending it leaves the container running."""
    name = unique("execit")
    engine.docker("run", "-d", "--init", "--network", "none", "--name", name, IMAGE, "sleep", "300")
    argv = [engine.cli, "exec", "-it", name, "sh"]
    with Terminal(argv, engine.env, rows=30, cols=100) as term:
        term.expect(PROMPT)
        await_size(term, 30, 100)
        term.send("echo exec-$((3*5)); read line; echo got-$line\r")
        term.expect(r"exec-15")
        term.send("typed\r")
        term.expect(r"got-typed")
        term.send("exit\r")
        assert term.wait(30) == 0
    # The exec ended; the container goes on.
    assert engine.docker("inspect", "-f", "{{.State.Running}}", name).stdout.strip() == "true"


def test_attach_tty_and_detach_keys(engine: Engine) -> None:
    """docker attach to a TTY container works, the detach keys leave it running, and a second attach
    ends it with the shell's exit code."""
    name = unique("attach")
    engine.docker("run", "-dit", "--network", "none", "--name", name, IMAGE, "sh")
    with Terminal([engine.cli, "attach", name], engine.env) as term:
        term.send("echo attached-$((4*3))\r")
        term.expect(r"attached-12")
        term.send(b"\x10\x11")  # ctrl-p ctrl-q
        term.expect(r"read escape sequence")
        # CLI 28 reports the detach as exit status 1 (the escape "error").
        assert term.wait(30) in (0, 1)
    state = json.loads(engine.docker("inspect", "-f", "{{json .State}}", name).stdout)
    assert state["Running"] is True
    # Attach again and end the shell: attach then exits with the shell's status.
    with Terminal([engine.cli, "attach", name], engine.env) as term:
        term.send("echo again-$((2*2))\r")
        term.expect(r"again-4")
        term.send("exit 9\r")
        assert term.wait(30) == 9
    assert engine.docker("wait", name, timeout=30).stdout.strip() == "9"
