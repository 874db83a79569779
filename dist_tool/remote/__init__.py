"""Registries (the OCI distribution API) and, later, the client and server of ``dist serve``.

Everything here may import httpx, so only the commands that talk to a remote import this package.
"""
