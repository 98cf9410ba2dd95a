"""The Twisted edge of an exchange: ``protocol`` (the client-facing
connection), ``upstream`` (connections to the daemon), ``splice`` (hijacked
sessions), ``settings`` (what a factory runs with), and the per-connection
devices ``gate`` (read pausing), ``deadline`` (movable timeouts), ``peer``
(who is calling) and ``binding`` (decisions bound to what was checked);
``lifecycle`` (pure) is an exchange's state machine, the one table of its moves.
"""
