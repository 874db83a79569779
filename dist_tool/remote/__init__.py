"""Registries (the OCI distribution API) and, later, the client and server of ``dist serve``.

Only the commands that talk to a remote import this package (its HTTP costs start-up time).
"""
