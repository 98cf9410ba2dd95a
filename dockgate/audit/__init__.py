"""The audit log: records (``schema``), what is recorded at which level
(``rules``, ``redact``, ``session``), the hash chain and its keys (``chain``,
``keys``), writing (``writer``, and ``sink``, the Twisted-facing side with
``config``) and reading it back (``review``).
"""
