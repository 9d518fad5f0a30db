"""No import runs against the data flow model → plan → backends → profile → schedule → sim /
runtime → cli (docs/architecture.md). Walks every module's imports, function-level ones
included (they run too), and fails on a backward one."""

from __future__ import annotations

import ast
from pathlib import Path

import janus_deploy

PKG = Path(janus_deploy.__file__).parent

# room -> rank; a module may import rooms of its own rank or lower
RANK = {
    "": 0, "levels": 0, "images": 0,  # the package root (errors, version), pure helpers
    "wire": 1, "net": 1,  # contracts below everything that speaks or simulates the network
    "model": 2, "plan": 3, "backends": 4,
    "profile": 5, "calibrate": 5,
    "schedule": 6, "report": 6,
    "sim": 7, "runtime": 7, "triton": 7,
    "demo": 8, "testbed": 8, "cli": 9,
}
# rooms of one rank that must not know each other
APART = {frozenset({"sim", "runtime"})}


def room(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text())
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            node.body = []  # annotations only
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "janus_deploy":  # from janus_deploy import levels
                out += [(node.lineno, f"janus_deploy.{a.name}") for a in node.names]
            elif node.module.startswith("janus_deploy."):
                out.append((node.lineno, node.module))
        elif isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names if a.name.startswith("janus_deploy.")]
    return out


def test_no_backward_imports():
    bad = []
    for path in sorted(PKG.rglob("*.py")):
        rel = path.relative_to(PKG.parent).with_suffix("")
        mod = ".".join(rel.parts).removesuffix(".__init__")
        src = room(mod).removesuffix(".py")
        assert src in RANK, f"{mod}: room {src!r} has no place in the data flow (add it to RANK)"
        for line, target in imports(path):
            dst = room(target)
            if dst not in RANK:
                dst = ""  # janus_deploy.<name defined in __init__>
            if RANK[dst] > RANK[src] or frozenset({src, dst}) in APART:
                bad.append(f"{mod}:{line} imports {target} ({dst} is after {src or 'the root'})")
    assert not bad, "imports against the data flow:\n" + "\n".join(bad)


def test_the_check_catches_a_backward_import(tmp_path):
    """The walker sees function-level imports and skips TYPE_CHECKING ones."""
    f = tmp_path / "m.py"
    f.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import janus_deploy.cli.main\n"
                 "def f():\n    from janus_deploy.runtime.edge import EdgeRuntime\n")
    assert [t for _, t in imports(f)] == ["janus_deploy.runtime.edge"]
