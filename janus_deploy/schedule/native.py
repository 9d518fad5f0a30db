"""Where the installed libjanus lives, how it is built, and the ``janus-decide`` launcher.

``pip install`` (setup.py's ``build_libjanus`` step) compiles ``libjanus/`` (C11) into the
package as ``janus_deploy/_libjanus/``::

    include/janus.h  include/janus_embed.h
    lib/libjanus.so  lib/libjanus_embed.so (when Python has a shared libpython)  lib/pkgconfig/*.pc
    bin/janus-decide
    BUILD (what was built from which sources)

``python -m janus_deploy.schedule.native --cflags --libs [--embed]`` prints compiler flags for a C
program built against it. This module is standard-library only: setup.py loads it by path,
before janus-deploy is installed.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import uuid
from pathlib import Path

OUT_NAME = "_libjanus"
LIB_SOURCES = ("error.c", "table.c", "sched.c", "controller.c", "v2.c", "sim.c")
HEADERS = ("janus.h", "janus_embed.h")
#: -ffp-contract=off: no fused multiply-adds, so results match Python's bit for bit (aarch64 GCC
#: contracts by default); -fvisibility=hidden: only the JANUS_API functions are exported
CFLAGS = ("-std=c11", "-O2", "-fPIC", "-ffp-contract=off", "-fvisibility=hidden", "-Wall", "-Wextra")
VERSION = "1.1.0"


class NativeError(RuntimeError):
    """libjanus cannot be built or is not installed."""


def package_dir() -> Path:
    """``janus_deploy/`` (this file is ``janus_deploy/schedule/native.py``)."""
    return Path(__file__).resolve().parents[1]


def install_dir() -> Path:
    return package_dir() / OUT_NAME


def source_dir() -> Path:
    """``libjanus/`` of a source checkout (next to the package)."""
    return package_dir().parent / "libjanus"


def include_dir() -> Path:
    return install_dir() / "include"


def library_path(embed: bool = False) -> Path:
    return install_dir() / "lib" / ("libjanus_embed.so" if embed else "libjanus.so")


def decide_path() -> Path:
    return install_dir() / "bin" / "janus-decide"


def cflags() -> list[str]:
    return [f"-I{include_dir()}"]


def libs(embed: bool = False) -> list[str]:
    lib = install_dir() / "lib"
    out = [f"-L{lib}", f"-Wl,-rpath,{lib}"]
    return out + (["-ljanus_embed", "-ljanus"] if embed else ["-ljanus", "-lm"])


def compiler() -> list[str]:
    cc = os.environ.get("CC") or (sysconfig.get_config_var("CC") or "cc")
    cmd = shlex.split(cc)
    if not shutil.which(cmd[0]):
        cmd = ["cc"]
    return cmd


def _digest(src: Path, extra: str) -> str:
    h = hashlib.sha256(extra.encode())
    for p in sorted(src.rglob("*")):
        if p.is_file() and p.suffix in (".c", ".h"):
            h.update(str(p.relative_to(src)).encode() + b"\0" + p.read_bytes())
    return h.hexdigest()


def _python_embed() -> dict[str, str] | None:
    """Compile and link settings for libjanus_embed, None when this Python cannot be embedded
    from a shared library (a static libpython)."""
    libdir = sysconfig.get_config_var("LIBDIR")
    ldlib = sysconfig.get_config_var("LDLIBRARY") or ""
    if not sysconfig.get_config_var("Py_ENABLE_SHARED") or not libdir or not ldlib.endswith(".so"):
        return None
    if not (Path(libdir) / ldlib).exists():
        return None
    name = ldlib[3:-3]  # libpython3.11.so -> python3.11
    return {"include": sysconfig.get_paths()["include"], "libdir": libdir, "lib": name,
            "python": sys.executable}


def _pc(name: str, desc: str, libs_: str, requires: str = "") -> str:
    return ("prefix=${pcfiledir}/../..\nlibdir=${prefix}/lib\nincludedir=${prefix}/include\n\n"
            f"Name: {name}\nDescription: {desc}\nVersion: {VERSION}\n"
            + (f"Requires: {requires}\n" if requires else "")
            + f"Libs: -L${{libdir}} -Wl,-rpath,${{libdir}} {libs_}\nCflags: -I${{includedir}}\n")


def build(src: Path | None = None, dest: Path | None = None, *, extra_cflags: tuple[str, ...] = (),
          embed: bool = True, log=print) -> Path:
    """Compile libjanus from ``src`` (default: the checkout's ``libjanus/``) into ``dest`` (default:
    the package's ``_libjanus``). Written to a temporary folder, then moved into place, so a
    concurrent reader sees the old build or the new one, never half of one."""
    src = Path(src or source_dir()).resolve()
    dest = Path(dest or install_dir()).resolve()
    if not (src / "include" / "janus.h").is_file():
        raise NativeError(f"{src} is not the libjanus source folder (no include/janus.h)")
    cc = compiler()
    flags = [*CFLAGS, *extra_cflags]
    py = _python_embed() if embed else None
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}-", dir=dest.parent))

    def run(cmd: list[str]) -> None:
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            raise NativeError(f"building libjanus failed:\n$ {shlex.join(cmd)}\n{r.stdout}{r.stderr}")

    try:
        for d in ("include", "lib/pkgconfig", "bin", "obj"):
            (tmp / d).mkdir(parents=True, exist_ok=True)
        inc = ["-I", str(src / "include")]
        objs = []
        for name in LIB_SOURCES:
            obj = tmp / "obj" / (name[:-2] + ".o")
            run([*cc, *flags, *inc, "-c", str(src / "src" / name), "-o", str(obj)])
            objs.append(str(obj))
        run([*cc, "-shared", "-Wl,-soname,libjanus.so", *objs, "-lm", "-o", str(tmp / "lib" / "libjanus.so")])
        run([*cc, *flags, *inc, str(src / "src" / "janus_decide.c"), *objs, "-lm", "-o", str(tmp / "bin" / "janus-decide")])
        if py is not None:
            run([*cc, *flags, *inc, "-I", py["include"], f'-DJANUS_DEFAULT_PYTHON="{py["python"]}"', "-shared",
                 str(src / "src" / "embed.c"), "-o", str(tmp / "lib" / "libjanus_embed.so"),
                 "-Wl,-soname,libjanus_embed.so", f"-L{tmp / 'lib'}", "-ljanus", "-Wl,-rpath,$ORIGIN",
                 f"-L{py['libdir']}", f"-l{py['lib']}", f"-Wl,-rpath,{py['libdir']}", "-ldl", "-lpthread", "-lm"])
            (tmp / "lib" / "pkgconfig" / "janus-embed.pc").write_text(
                _pc("janus-embed", "libjanus embedded runtime (hosts the Python edge runtime)", "-ljanus_embed",
                    "janus"))
        elif embed:
            log("libjanus: this Python has no shared libpython; libjanus_embed is not built")
        for h in HEADERS:
            shutil.copy2(src / "include" / h, tmp / "include" / h)
        (tmp / "lib" / "pkgconfig" / "janus.pc").write_text(
            _pc("janus", "Janus decision core (decision tables, controller, V2 wire format)", "-ljanus -lm"))
        shutil.rmtree(tmp / "obj")
        (tmp / "BUILD").write_text(json.dumps({"version": VERSION, "sources": _digest(src, " ".join(flags)),
                                               "compiler": cc, "cflags": flags, "embed": py is not None,
                                               "python": py["python"] if py else None}, indent=1) + "\n")
        old = dest.with_name(f".{dest.name}-old-{uuid.uuid4().hex}")
        try:
            dest.rename(old)
        except FileNotFoundError:
            pass
        try:
            tmp.rename(dest)
        except OSError:  # another process (a parallel test session) just put its build there
            if (build_info(dest) or {}).get("sources") != json.loads((tmp / "BUILD").read_text())["sources"]:
                raise
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log(f"libjanus {VERSION} built into {dest}")
    return dest


def build_info(dest: Path | None = None) -> dict | None:
    p = Path(dest or install_dir()) / "BUILD"
    try:
        return json.loads(p.read_text())
    except (OSError, ValueError):
        return None


def is_current(src: Path | None = None, dest: Path | None = None, extra_cflags: tuple[str, ...] = ()) -> bool:
    """True when ``dest`` holds a build of exactly the sources in ``src``."""
    info = build_info(dest)
    src = Path(src or source_dir())
    return bool(info) and src.is_dir() and info.get("sources") == _digest(src, " ".join([*CFLAGS, *extra_cflags]))


def decide_main() -> None:
    """The ``janus-decide`` console script: replaces this process with the C program."""
    exe = decide_path()
    if not exe.is_file():
        sys.stderr.write(f"janus-decide: error: libjanus is not built ({exe} is missing); reinstall janus-deploy "
                         "(pip install .) with a C compiler available\n")
        raise SystemExit(2)
    os.execv(str(exe), [str(exe), *sys.argv[1:]])


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    embed = "--embed" in args
    out = []
    if "--cflags" in args:
        out += cflags()
    if "--libs" in args:
        out += libs(embed)
    if "--prefix" in args:
        out.append(str(install_dir()))
    if not out:
        print("usage: python -m janus_deploy.schedule.native [--cflags] [--libs] [--embed] [--prefix]")
        raise SystemExit(2)
    print(" ".join(out))


if __name__ == "__main__":
    main()
