"""The per-task shim: one small process per running task, no daemon.

Everything in this package imports only the standard library's low-level
modules (``posix``, ``_socket``, ``_signal``, ``select``, ``_json``; not even
``os``) plus ``dist_tool.proc``,
so a detached shim is a fresh ``python -I -S`` of a few megabytes; only the
exit path imports ``dist_tool.store.metadata`` to record ``lastExit``. See
``server.Shim`` for the lifecycle and ``proto`` for the socket protocol.
"""
