"""Read-only view of an accuracy table, as the scheduler and simulator need it.

The accuracy-table file (``docs/profile-format.md``, ``kind: "janus-deploy/accuracy"``) is owned
by the calibration stage (:mod:`janus_deploy.calibrate.accuracy`, which loads and validates it);
the scheduler only needs one number per level: :func:`accuracy_by_level` maps ``(policy, level)`` to top-1 accuracy, or to top-1
agreement with the unpruned model when the table has no labels (``accuracy`` null).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from janus_deploy.calibrate.accuracy import AccuracyError, load_accuracy  # noqa: F401 - re-exported
from janus_deploy.levels import LevelKey


def _field(obj: Any, name: str) -> Any:
    return obj.get(name) if isinstance(obj, Mapping) else getattr(obj, name, None)


def accuracy_by_level(table: Any) -> tuple[dict[LevelKey, float], str]:
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
            out[LevelKey.of(*k)] = float(v)
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
            out[LevelKey.of(_field(lv, "policy"), _field(lv, "alpha"))] = float(v)
    if not out:
        raise AccuracyError("the accuracy table has neither accuracy nor agreement values")
    return out, metric


def accuracy_by_option(table: Any, metric: str) -> dict[tuple[LevelKey, str, int], float]:
    """``{(level, codec, split): value}``: what a table measured with a codec's loss (the
    ``codecs`` of each level, ``calibrate --codecs``), in the same ``metric`` as
    :func:`accuracy_by_level`. Empty for tables without the codec dimension."""
    if table is None or metric == "none" or (isinstance(table, Mapping) and "levels" not in table):
        return {}
    out: dict[tuple[LevelKey, str, int], float] = {}
    for lv in _field(table, "levels") or []:
        key = LevelKey.of(_field(lv, "policy"), _field(lv, "alpha"))
        for codec, splits in (_field(lv, "codecs") or {}).items():
            for s, cell in splits.items():
                v = _field(cell, metric)
                if v is not None:
                    out[(key, str(codec), int(s))] = float(v)
    return out


def measured_codecs(table: Any) -> set[str]:
    """Codecs whose loss the table measured (any level)."""
    if table is None or (isinstance(table, Mapping) and "levels" not in table):
        return set()
    return {str(c) for lv in _field(table, "levels") or [] for c in (_field(lv, "codecs") or {})}
