"""Generated sections of the docs, written from the code that defines them (one home each).

Each section sits between ``<!-- generated:NAME -->`` and ``<!-- /generated:NAME -->`` markers;
this tool rewrites what is between them. ``--check`` writes nothing and exits 1 when a file is
out of date (tests/test_runlog.py runs it, so docs and code cannot drift apart).

    PYTHONPATH=. .venv/bin/python tools/gen_docs.py [--check]

Sections: ``run-log-record`` in docs/runtime.md (the run log's request record, from
``janus_deploy.schedule.runlog.RequestRecord``).
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _run_log_record() -> str:
    from janus_deploy.schedule.runlog import schema_markdown

    return schema_markdown()


SECTIONS: dict[str, tuple[Path, Callable[[], str]]] = {
    "run-log-record": (ROOT / "docs" / "runtime.md", _run_log_record),
}


def render(text: str, name: str, body: str) -> str:
    """``text`` with section ``name`` replaced by ``body``; ValueError when its markers are missing."""
    pat = re.compile(rf"(<!-- generated:{re.escape(name)} -->\n).*?(<!-- /generated:{re.escape(name)} -->)", re.S)
    if not pat.search(text):
        raise ValueError(f"no <!-- generated:{name} --> ... <!-- /generated:{name} --> markers")
    return pat.sub(lambda m: m.group(1) + body.rstrip("\n") + "\n" + m.group(2), text, count=1)


def stale() -> list[str]:
    """The sections whose file differs from what the code generates."""
    out = []
    for name, (path, make) in SECTIONS.items():
        text = path.read_text()
        if render(text, name, make()) != text:
            out.append(f"{path.relative_to(ROOT)} ({name})")
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true", help="write nothing; exit 1 when a section is out of date")
    args = ap.parse_args()
    if args.check:
        bad = stale()
        for b in bad:
            print(f"out of date: {b}; run tools/gen_docs.py", file=sys.stderr)
        return 1 if bad else 0
    for name, (path, make) in SECTIONS.items():
        text = path.read_text()
        new = render(text, name, make())
        if new != text:
            path.write_text(new)
            print(f"wrote {path.relative_to(ROOT)} ({name})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
