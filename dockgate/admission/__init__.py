"""Admission: a request's bytes become one ``CanonicalRequest`` or a
refusal, reading them exactly as the daemon would.  ``target`` and ``query``
canonicalise the request-target, ``routes`` and ``versions`` find the API
operation, ``jsonstrict`` decodes bodies as Go's encoding/json would (and
refuses what it would read differently), ``validation`` and ``schemas`` check
them against the operation's JSON schema, ``admit`` ties it together.
"""
