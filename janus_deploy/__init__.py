"""janus-deploy: deploy Vision Transformers across an edge device and a cloud server (Janus)."""

__version__ = "0.1.0"


class JanusError(Exception):
    """Base class of errors a user can cause; the CLI prints them without a traceback."""
