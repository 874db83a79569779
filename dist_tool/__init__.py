"""dist: a daemonless container tool. Nothing is imported here so that start-up stays cheap."""

__version__ = "0.1.0"
