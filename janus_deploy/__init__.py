"""janus-deploy: deploy Vision Transformers across an edge device and a cloud server (Janus)."""

__version__ = "0.2.0"


class JanusError(Exception):
    """Base class of errors a user can cause; the CLI prints them without a traceback."""


def read_json(path, error: type[JanusError], missing: str) -> object:
    """Parse a contract file (manifest, engines, profile, accuracy table), raising ``error`` with
    ``missing`` (what to do) when the file is absent and a clear message when it is not JSON."""
    import json
    from pathlib import Path

    path = Path(path)
    if not path.is_file():
        raise error(f"{path} does not exist: {missing}")
    try:
        return json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise error(f"{path} is not valid JSON ({exc})") from None
