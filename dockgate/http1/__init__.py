"""HTTP/1.1 as dockgate speaks it, without I/O: ``server`` reads what
clients send and writes dockgate's answers, ``client`` writes requests to the
daemon and reads its responses, ``wire`` holds the rules both share (header
names and values, the hop-by-hop set, ``Connection`` tokens, chunked framing).
"""
