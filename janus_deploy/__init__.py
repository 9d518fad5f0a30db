"""janus-deploy: deploy Vision Transformers across an edge device and a cloud server (Janus)."""

__version__ = "0.2.0"


class JanusError(Exception):
    """Base class of errors a user can cause; the CLI prints them without a traceback."""


# Optional modules -> the extra of pyproject.toml that installs them. `pip install janus-deploy` is
# the runtime (engines, profile, schedule, simulate, serve, run); export, verify and calibrate
# re-create the model in PyTorch and need [export].
EXTRAS = {
    "torch": "export", "torchvision": "export", "timm": "export", "safetensors": "export",
    "sklearn": "calib", "matplotlib": "plot", "tritonclient": "triton", "yaml": "triton",
    "aiohttp": "triton",
    "tensorrt": "trt", "pycuda": "trt",
}


def missing_extra_hint(exc: ImportError, what: str = "this") -> str | None:
    """One line naming the extra to install when ``exc`` is the import of an optional module
    (``EXTRAS``); None for any other import error (a bug or a broken install: not ours to word)."""
    name = (getattr(exc, "name", None) or "").split(".")[0]
    extra = EXTRAS.get(name)
    if extra is None:
        return None
    return f"{what} needs {name}, which this install leaves out: pip install 'janus-deploy[{extra}]'"


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


def check_output_path(path, what: str, *, folder: bool = False, error: type[JanusError] = JanusError,
                      force: bool | None = None):
    """Raise ``error`` (one line naming the fix) unless ``path`` can be written as a file (or, with
    ``folder``, created or reused as a folder): called before a long computation whose result
    goes there, so a wrong ``--out`` fails at once, not after the work. A FIFO, device or other
    non-regular file is refused (a write would hang or go nowhere), so is a folder that cannot be
    written; ``force`` given (a command's ``--force``): an existing file is refused unless it is
    true (no silent overwrite)."""
    import os
    import stat
    from pathlib import Path

    path = Path(path)
    if folder and path.exists() and not path.is_dir():
        raise error(f"the {what} {path} is an existing file; give a folder path")
    if not folder and path.is_dir():
        raise error(f"the {what} {path} is a folder; give a file path (e.g. {path / 'out.json'})")
    if not folder:
        try:
            mode = path.stat().st_mode
        except OSError:
            mode = None
        if mode is not None and not stat.S_ISREG(mode):
            kind = ("a FIFO" if stat.S_ISFIFO(mode) else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
                    else "a socket" if stat.S_ISSOCK(mode) else "not a regular file")
            raise error(f"the {what} {path} is {kind}; give a regular file path")
        if mode is not None and str(path.resolve()).startswith("/proc/"):
            raise error(f"the {what} {path} is a kernel file under /proc; give a regular file path")
        if mode is not None and force is False:
            raise error(f"the {what} {path} already exists; pass --force to overwrite it, or give another path")
        if mode is not None and not os.access(path, os.W_OK):
            raise error(f"the {what} {path} is not writable; give another path")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise error(f"the {what} {path} is inside {parent}, which is a file; give another path")
            if not (path.exists() and not folder) and not os.access(parent, os.W_OK | os.X_OK):
                raise error(f"the {what} {path} cannot be created: {parent} is not writable (read-only?); "
                            "give another path")
            break
    return path
