"""Benchmarks of dist side by side with its anchors (ctr, podman, skopeo): `python -m bench`.

Nothing is imported here: `python -m bench --help` stays cheap, and the modules import only the
standard library, so the harness runs whether or not dist itself works yet.
"""
