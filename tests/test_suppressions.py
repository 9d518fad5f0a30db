"""Every lint or type suppression in the package says why (issue 20): `# noqa: CODE - reason`
or `# type: ignore[code]  # reason`. ruff and mypy themselves run in .ci/run."""

from __future__ import annotations

import re
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "janus_deploy"
NOQA = re.compile(r"#\s*noqa(?P<codes>:\s*[A-Z]+[0-9]+(?:\s*,\s*[A-Z]+[0-9]+)*)?(?P<rest>.*)$")
IGNORE = re.compile(r"#\s*type:\s*ignore(?P<codes>\[[a-z0-9, -]+\])?(?P<rest>.*)$")


def unexplained(line: str) -> str | None:
    """Why ``line``'s suppression is not acceptable, or None."""
    for pattern, sep, what in ((NOQA, "-", "noqa"), (IGNORE, "#", "type: ignore")):
        m = pattern.search(line)
        if m is None:
            continue
        if not m.group("codes"):
            return f"a blanket {what} (name the codes)"
        rest = m.group("rest").strip()
        if not (rest.startswith(sep) and len(rest.lstrip(sep).strip()) >= 8):
            return f"a {what} without its reason"
    return None


def test_the_checker_tells_good_from_bad():
    assert unexplained("x = 1  # noqa: E731 - a named lambda reads better here") is None
    assert unexplained("y  # type: ignore[index]  # set when the exchange answered") is None
    assert unexplained("x = 1  # noqa: E731") == "a noqa without its reason"
    assert unexplained("x = 1  # noqa") == "a blanket noqa (name the codes)"
    assert unexplained("y  # type: ignore[index]") == "a type: ignore without its reason"
    assert unexplained("y  # type: ignore") == "a blanket type: ignore (name the codes)"


def test_every_suppression_in_the_package_has_a_reason():
    bad = [f"{p.relative_to(PKG.parent)}:{i}: {why}" for p in sorted(PKG.rglob("*.py"))
           for i, line in enumerate(p.read_text().splitlines(), 1) if (why := unexplained(line))]
    assert not bad, "\n".join(bad)
