"""Read-only view of an accuracy table, as the scheduler and simulator need it.

The accuracy-table file (``docs/profile-format.md``, ``kind: "janus-deploy/accuracy"``) is owned
by the calibration stage (:mod:`janus_deploy.calibrate.accuracy`); its ``load_accuracy`` is used
when importable, otherwise the JSON is read and checked here. Either way the scheduler only needs one number per
level: :func:`accuracy_by_level` maps ``(policy, level)`` to top-1 accuracy, or to top-1
agreement with the unpruned model when the table has no labels (``accuracy`` null).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

from janus_deploy import JanusError

KIND = "janus-deploy/accuracy"
FORMAT_VERSION = 1


class AccuracyError(JanusError):
    """An accuracy table is malformed."""


def level_key(policy: str, level: float) -> tuple[str, float]:
    """Lookup key of a level (level values compare at 1e-6)."""
    return (str(policy), round(float(level), 6))


def _parse(data: Any, where: str) -> dict[str, Any]:
    if not isinstance(data, Mapping):
        raise AccuracyError(f"{where} must be a JSON object")
    if data.get("kind") != KIND:
        raise AccuracyError(f"{where} has kind {data.get('kind')!r}, expected {KIND!r} "
                            "(did you pass a profile as --accuracy?)")
    if data.get("format_version") != FORMAT_VERSION:
        raise AccuracyError(f"{where} has format_version {data.get('format_version')!r}; this "
                            f"janus-deploy reads version {FORMAT_VERSION}")
    levels = data.get("levels")
    if not isinstance(levels, list) or not levels:
        raise AccuracyError(f"{where}.levels must be a non-empty list")
    for i, lv in enumerate(levels):
        if not isinstance(lv, Mapping) or "policy" not in lv or "alpha" not in lv:
            raise AccuracyError(f"{where}.levels[{i}] needs 'policy' and 'alpha'")
        for key in ("accuracy", "agreement"):
            v = lv.get(key)
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))
                                  or not 0.0 <= v <= 1.0):
                raise AccuracyError(f"{where}.levels[{i}].{key} must be in [0, 1] or null, got {v!r}")
    return dict(data)


def load_accuracy(path: str | Path) -> Any:
    """Load an accuracy table (through :mod:`janus_deploy.profile.accuracy` when available)."""
    p = Path(path)
    if not p.is_file():
        raise AccuracyError(f"accuracy table {p} does not exist")
    try:
        from janus_deploy.calibrate import accuracy as _acc  # owned by the calibration stage
    except ImportError:
        _acc = None
    if _acc is not None and hasattr(_acc, "load_accuracy"):
        return _acc.load_accuracy(p)
    try:
        data = json.loads(p.read_text())
    except json.JSONDecodeError as exc:
        raise AccuracyError(f"{p} is not valid JSON ({exc})") from None
    return _parse(data, p.name)


def _field(obj: Any, name: str) -> Any:
    return obj.get(name) if isinstance(obj, Mapping) else getattr(obj, name, None)


def accuracy_by_level(table: Any) -> tuple[dict[tuple[str, float], float], str]:
    """``({(policy, level): value}, metric)`` from a table object, a parsed JSON dict or a plain
    ``{(policy, level): value}`` mapping. ``metric`` is ``"accuracy"`` when every level has a
    labelled accuracy, else ``"agreement"`` (agreement with the unpruned model)."""
    if table is None:
        return {}, "none"
    if isinstance(table, Mapping) and "levels" not in table:
        out = {}
        for k, v in table.items():
            if not (isinstance(k, tuple) and len(k) == 2):
                raise AccuracyError(f"accuracy mapping keys must be (policy, level), got {k!r}")
            out[level_key(*k)] = float(v)
        return out, "accuracy"
    levels = _field(table, "levels")
    if not levels:
        raise AccuracyError("the accuracy table has no levels")
    acc = [_field(lv, "accuracy") for lv in levels]
    metric = "accuracy" if all(a is not None for a in acc) else "agreement"
    out = {}
    for lv in levels:
        v = _field(lv, metric)
        if v is not None:
            out[level_key(_field(lv, "policy"), _field(lv, "alpha"))] = float(v)
    if not out:
        raise AccuracyError("the accuracy table has neither accuracy nor agreement values")
    return out, metric
