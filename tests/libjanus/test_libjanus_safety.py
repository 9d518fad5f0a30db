"""libjanus under AddressSanitizer + UBSan and under valgrind, with zero reports: its own tests
(libjanus/tests/test_janus.c: error paths, controller paths, concurrent decisions) and a bounded
mutation fuzz of the table loader (thousands of corrupted, truncated and extended files, most
with a fixed-up checksum so the structural checks behind it are reached) and of the V2 response
decoder; `janus-decide` fed hostile input lines."""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest
from libjanus_support import REPO, SRC, cc, compile_c
from sched_fixtures import profiles

from janus_deploy.profile.table import resolve_profile
from janus_deploy.schedule.table_file import write_table

LIB_SOURCES = [SRC / "src" / n for n in ("error.c", "table.c", "sched.c", "controller.c", "v2.c", "sim.c")]
SANITIZE = ("-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-fno-omit-frame-pointer")
SAN_ENV = {"ASAN_OPTIONS": "detect_leaks=1:abort_on_error=0:halt_on_error=1:strict_string_checks=1",
           "UBSAN_OPTIONS": "print_stacktrace=1:halt_on_error=1"}


@pytest.fixture(scope="module")
def tables(tmp_path_factory):
    d = tmp_path_factory.mktemp("tables")
    edge, cloud = profiles(enc_ms=0.5, dec_ms=0.25)
    tiny = write_table(d / "tiny.jdt", edge, cloud, sla_ms=300.0,
                       accuracy={("exponential", 0.0): 0.8, ("exponential", 0.5): 0.8, ("constant", 1.0): 0.7})
    vitl = write_table(d / "vitl.jdt", resolve_profile("vit_large_patch16_384-jetson-orin-nano"),
                       resolve_profile("vit_large_patch16_384-v100"))
    return tiny, vitl


def _sanitizers_work(tmp) -> bool:
    probe = tmp / "probe.c"
    probe.write_text("int main(void) { return 0; }\n")
    r = subprocess.run([cc(), *SANITIZE, str(probe), "-o", str(tmp / "probe")], capture_output=True)
    return r.returncode == 0 and subprocess.run([str(tmp / "probe")], env={**os.environ, **SAN_ENV}).returncode == 0


@pytest.fixture(scope="module")
def asan_lib(tmp_path_factory):
    """libjanus compiled once with the sanitizers (an archive the test programs link)."""
    d = tmp_path_factory.mktemp("asan")
    if not _sanitizers_work(d):
        pytest.skip("this compiler cannot build with -fsanitize=address,undefined")
    objs = []
    for src in LIB_SOURCES:
        obj = d / (src.stem + ".o")
        r = subprocess.run([cc(), "-std=c11", "-O1", "-g", "-ffp-contract=off", *SANITIZE, f"-I{SRC / 'include'}", "-c",
                            str(src), "-o", str(obj)], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        objs.append(str(obj))
    archive = d / "libjanus_asan.a"
    subprocess.run(["ar", "rcs", str(archive), *objs], check=True)
    return archive


def fuzz_summary(stdout: str) -> dict[str, dict[str, int]]:
    out = {}
    for line in stdout.splitlines():
        m = re.match(r"(.+?): \d+ mutated tables:(.*) \(decisions", line)
        if m:
            out[os.path.basename(m.group(1))] = {k: int(v) for k, v in re.findall(r"JANUS_(\w+)=(\d+)", m.group(2))}
    return out


def test_asan_ubsan_library_tests_and_loader_fuzz(tables, asan_lib, tmp_path):
    exe = compile_c([SRC / "tests" / "test_janus.c", asan_lib], tmp_path / "test_janus_asan",
                    f"-I{SRC / 'include'}", *SANITIZE, "-lm", "-pthread")
    r = subprocess.run([str(exe), *map(str, tables), "--fuzz", "3000", "--threads", "4"], capture_output=True,
                       text=True, timeout=300, env={**os.environ, **SAN_ENV})
    report = r.stdout + r.stderr
    assert r.returncode == 0 and r.stdout.rstrip().endswith("OK"), report[-4000:]
    assert "runtime error" not in report and "Sanitizer" not in report, report[-4000:]
    counts = fuzz_summary(r.stdout)
    for name, c in counts.items():
        assert sum(c.values()) == 3000, (name, c)
        # every layer of the loader was reached: header, checksum, structure, content, and loads
        assert {"OK", "E_FORMAT", "E_CHECKSUM", "E_CORRUPT"} <= set(c), (name, c)
    assert set(counts) == {"tiny.jdt", "vitl.jdt"}


def test_valgrind_library_tests(tables, tmp_path):
    if not shutil.which("valgrind"):
        pytest.skip("valgrind is not installed")
    exe = compile_c([*LIB_SOURCES, SRC / "tests" / "test_janus.c"], tmp_path / "test_janus",
                    f"-I{SRC / 'include'}", "-lm", "-pthread")
    r = subprocess.run(["valgrind", "--error-exitcode=99", "--leak-check=full", "--show-leak-kinds=all",
                        "--errors-for-leak-kinds=all", "--track-origins=yes", str(exe), *map(str, tables),
                        "--fuzz", "250", "--threads", "2"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-4000:]
    assert re.search(r"ERROR SUMMARY: 0 errors from 0 contexts", r.stderr), r.stderr[-4000:]
    assert "All heap blocks were freed" in r.stderr, r.stderr[-4000:]
    assert r.stdout.rstrip().endswith("OK")


def test_janus_decide_under_sanitizers_with_hostile_input(tables, asan_lib, tmp_path):
    exe = compile_c([SRC / "src" / "janus_decide.c", asan_lib], tmp_path / "janus_decide_asan",
                    f"-I{SRC / 'include'}", *SANITIZE, "-lm")
    fine = ["", "   ", "1e400 0 100 paper", "inf 0 100 janus-deploy", "0 0 1e-300 paper", "1" * 5000 + " 0 100 paper",
            "\t5\t1\t50\tjanus-deploy\r", "-0 0 100 paper", "0x10 0 100 paper"]
    hostile = ["\n".join(fine), "1 2 3 paper extra", "nan 0 100 paper", "5 0 100 " + "p" * 10000, "\x00\x01 2 3 paper"]
    for line in hostile:
        r = subprocess.run([str(exe), str(tables[1])], input=(line + "\n").encode(), capture_output=True, timeout=60,
                           env={**os.environ, **SAN_ENV})
        err = r.stderr.decode(errors="replace")
        assert r.returncode in (0, 2) and "Sanitizer" not in err and "runtime error" not in err, (line[:40], err)
        assert r.returncode == 0 or len(err.strip().splitlines()) == 1, (line[:40], err)
    r = subprocess.run([str(exe), str(REPO / "README.md")], input=b"1 0 100 paper\n", capture_output=True, timeout=60,
                       env={**os.environ, **SAN_ENV})
    assert r.returncode == 2 and b"bad magic" in r.stderr
