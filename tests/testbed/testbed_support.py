"""The root check of the testbed tests (a module of its own: ``conftest`` names clash across folders)."""

from __future__ import annotations

import pytest

from janus_deploy.testbed import TestbedError, check_privileges


def _why_not_root() -> str | None:
    try:
        check_privileges()
    except TestbedError as exc:
        return str(exc)
    return None


WHY_NOT = _why_not_root()
needs_root = pytest.mark.skipif(WHY_NOT is not None, reason=f"needs root: {WHY_NOT}")
