"""Counts for issue 20: functions over 60 lines, functions with > 8 parameters (CLI commands
listed apart: typer declares each option as a parameter), option flags declared more than once."""
import ast, collections, sys
from pathlib import Path
root = Path(sys.argv[1]) / "janus_deploy"
long, many, many_cli, flags = [], [], [], collections.Counter()
for p in sorted(root.rglob("*.py")):
    t = ast.parse(p.read_text())
    for n in ast.walk(t):
        if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)):
            L = n.end_lineno - n.lineno + 1
            a = n.args; k = len(a.posonlyargs) + len(a.args) + len(a.kwonlyargs)
            name = f"{p.relative_to(root.parent)}:{n.name}"
            if L > 60: long.append((L, name))
            if k > 8: (many_cli if "/cli/" in str(p) else many).append((k, name))
        if isinstance(n, ast.Call) and ast.unparse(n.func) in ("typer.Option",):
            for arg in n.args:
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str) and arg.value.startswith("--"):
                    flags[arg.value] += 1
rep = {f: c for f, c in flags.items() if c > 1}
print("functions > 60 lines:", len(long), sorted(long, reverse=True))
print("non-CLI functions > 8 params:", len(many), sorted(many, reverse=True))
print("CLI commands > 8 params:", len(many_cli))
print("option flags declared more than once:", len(rep), "declarations:", sum(rep.values()), sorted(rep.items(), key=lambda x: -x[1]))
