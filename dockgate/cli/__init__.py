"""The command-line front ends: ``main`` (``dockgate serve`` and the
subcommand dispatch), ``audit`` (``dockgate audit``), ``policy`` (``dockgate
policy``), ``routes`` (``dockgate routes``).
"""
