"""The C examples of docs/c-api.md compile against the installed header and library (warnings as
errors) and do what the text says; the standalone CMake build installs a library, janus-decide
and a pkg-config file that the same example builds against."""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import numpy as np
import pytest
from libjanus_support import SRC, compile_c, doc_examples, ensure_built

from janus_deploy.profile.table import resolve_profile
from janus_deploy.schedule import native
from janus_deploy.schedule.scheduler import Scheduler
from janus_deploy.schedule.table_file import write_table
from janus_deploy.wire.codecs import encode_tokens
from janus_deploy.wire.v2 import encode_request

VITL = ("vit_large_patch16_384-jetson-orin-nano", "vit_large_patch16_384-v100")


@pytest.fixture(scope="module")
def built():
    ensure_built()
    return doc_examples()


@pytest.fixture(scope="module")
def vitl(tmp_path_factory):
    edge, cloud = resolve_profile(VITL[0]), resolve_profile(VITL[1])
    return write_table(tmp_path_factory.mktemp("t") / "vitl.jdt", edge, cloud, sla_ms=300.0), edge, cloud


def build_example(name: str, code: str, tmp, embed: bool = False):
    src = tmp / name
    src.write_text(code)
    return compile_c([src], tmp / name[:-2], *native.cflags(), *native.libs(embed))


def test_every_layer_has_an_example(built):
    assert set(built) == {"decide.c", "controller.c", "wire.c", "embed.c"}


def test_decide_example(built, vitl, tmp_path):
    table, edge, cloud = vitl
    exe = build_example("decide.c", built["decide.c"], tmp_path)
    py = Scheduler(edge, cloud, None, "janus-deploy", sla_ms=300.0)
    for bw, rtt in ((12.5, 20.0), (0.5, 5.0), (300.0, 1.0)):
        out = subprocess.run([str(exe), str(table), repr(bw), repr(rtt)], capture_output=True, text=True, timeout=30)
        assert out.returncode == 0, out.stderr
        d = py.decide(bw, rtt_ms=rtt, margin=0.1)  # the table's stored margin (ControllerConfig's 0.1)
        m = re.match(r"level (\d+) \(alpha \S+\) split (\d+): ([\d.]+) ms predicted, (\d+) bytes sent", out.stdout)
        assert m and (int(m[1]), int(m[2]), int(m[4])) == (d.level_index, d.split, d.bytes), out.stdout
        assert float(m[3]) == pytest.approx(d.predicted_ms, abs=0.005)
    bad = subprocess.run([str(exe), str(tmp_path / "missing.jdt"), "1"], capture_output=True, text=True, timeout=30)
    assert bad.returncode == 1 and bad.stderr.startswith("JANUS_E_IO: cannot open")


def test_controller_example(built, vitl, tmp_path):
    exe = build_example("controller.c", built["controller.c"], tmp_path)
    out = subprocess.run([str(exe), str(vitl[0])], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0 and out.stderr == "", out.stderr
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("t=")]
    assert len(lines) == 8 and lines[0].startswith("t=0.0 s: estimate 100.0 Mbit/s"), out.stdout
    estimates = [float(re.search(r"estimate ([\d.]+)", ln)[1]) for ln in lines]
    assert estimates[1] < estimates[0]  # it learnt from the first exchange


def test_wire_example(built, tmp_path):
    exe = build_example("wire.c", built["wire.c"], tmp_path)
    out = subprocess.run([str(exe)], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    tokens = (np.arange(32, dtype=np.float32) / np.float32(10)).reshape(1, 4, 8)
    body, hl = encode_request(encode_tokens(tokens, np.ones((1, 4, 1), np.float32), "fp16"), request_id="0")
    assert f"request: {len(body)} bytes, Inference-Header-Content-Length: {hl}" in out.stdout
    assert "answer from janus_L1_S5: top-1 1, server 3.5 ms" in out.stdout


def test_embed_example_compiles(built, tmp_path):
    if not (native.build_info() or {}).get("embed"):
        pytest.skip("libjanus_embed was not built (this Python has no shared libpython)")
    assert build_example("embed.c", built["embed.c"], tmp_path, embed=True).is_file()  # runs in tests/runtime


def test_cmake_install_and_pkg_config(built, vitl, tmp_path):
    if not shutil.which("cmake") or not shutil.which("pkg-config"):
        pytest.skip("cmake or pkg-config is not installed")
    build, prefix = tmp_path / "build", tmp_path / "prefix"
    for cmd in (["cmake", "-S", str(SRC), "-B", str(build), "-DJANUS_BUILD_TESTS=OFF"],
                ["cmake", "--build", str(build), "-j2"], ["cmake", "--install", str(build), "--prefix", str(prefix)]):
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stdout + r.stderr
    pc_dirs = [str(p.parent) for p in prefix.rglob("janus.pc")]
    env = {**os.environ, "PKG_CONFIG_PATH": os.pathsep.join(pc_dirs)}
    flags = subprocess.run(["pkg-config", "--cflags", "--libs", "janus"], capture_output=True, text=True, env=env,
                           check=True).stdout.split()
    libdir = next(f[2:] for f in flags if f.startswith("-L"))
    src = tmp_path / "decide.c"
    src.write_text(built["decide.c"])
    exe = compile_c([src], tmp_path / "decide", *flags, f"-Wl,-rpath,{libdir}")
    r = subprocess.run([str(exe), str(vitl[0]), "12.5", "20"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and r.stdout.startswith("level "), r.stderr
    decide = next(prefix.rglob("janus-decide"))  # installed with an rpath to the library
    r = subprocess.run([str(decide), str(vitl[0])], input="12.5 20 300 janus-deploy\n", capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 0 and '"split": ' in r.stdout, r.stderr


def test_headers_compile_as_cpp(built, tmp_path):
    """The camera pipeline is C++: both headers compile there (extern "C", no C-only syntax)."""
    cxx = shutil.which("g++") or shutil.which("c++")
    if not cxx:
        pytest.skip("no C++ compiler")
    src = tmp_path / "app.cpp"
    src.write_text('#include <janus.h>\n#include <janus_embed.h>\n'
                   'int main() { janus_error e{}; janus_decision d{}; janus_rt_options o{}; (void)e; (void)d; (void)o;\n'
                   '  return janus_version()[0] == 0; }\n')
    r = subprocess.run([cxx, "-std=c++11", "-Wall", "-Wextra", "-pedantic", "-Werror", *native.cflags(), str(src),
                        "-o", str(tmp_path / "app"), *native.libs()], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert subprocess.run([str(tmp_path / "app")]).returncode == 0
