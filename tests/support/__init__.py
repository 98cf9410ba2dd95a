"""Test support: real Docker daemons, the dockgate process in front of them, a pty driver.

See tests/README.md for the fixtures built on these.
"""
