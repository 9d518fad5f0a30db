"""`replay` on a tampered run log: one line naming the record and field, rc 2 (a bad log), never a
traceback and never rc 1 (that is "not reproduced"). Issue 21 item 6, the record checks."""

from __future__ import annotations

import gzip
import json

import pytest
from typer.testing import CliRunner

from janus_deploy.cli.main import app
from janus_deploy.report import RUN_LOG_KIND, RUN_LOG_VERSION

HEADER = {"kind": RUN_LOG_KIND, "format_version": RUN_LOG_VERSION}
GOOD = {"t": 0.5, "decision": {"policy": "exp", "alpha": 0.0, "split": 3, "label": "0@3"},
        "observations": [{"t": 0.6, "kind": "transfer", "nbytes": 1000.0, "seconds": 0.01, "rtt_ms": 2.0}]}


def _with(**changes):
    rec = json.loads(json.dumps(GOOD))
    for path, value in changes.items():
        *head, last = path.split("__")
        node = rec
        for k in head:
            node = node[int(k)] if isinstance(node, list) else node[k]
        if value is KeyError:
            del node[last]
        else:
            node[last] = value
    return (json.dumps(HEADER) + "\n" + json.dumps(rec) + "\n").encode()


CASES = {
    "string time": (_with(t="0.5"), "record 1: t"),
    "t = Infinity": (_with(t=float("inf")), "record 1: t"),
    "key-less decision": (_with(decision={}), "record 1: decision.policy"),
    "decision a list": (_with(decision=[1]), "record 1: decision"),
    "alpha null": (_with(decision__alpha=None), "record 1: decision.alpha"),
    "split a string": (_with(decision__split="3"), "record 1: decision.split"),
    "observations: 5": (_with(observations=5), "record 1: observations"),
    "observation a number": (_with(observations=[5]), "record 1: observations[0]"),
    "observation without t": (_with(observations__0__t=KeyError), "record 1: observations[0]"),
    "observation kind unknown": (_with(observations__0__kind="teleport"), "record 1: observations[0]"),
    "observation nbytes a string": (_with(observations__0__nbytes="1e3"), "record 1: observations[0].nbytes"),
    "non-UTF-8 byte": (_with().replace(b'"exp"', b'"e\xffp"'), "not UTF-8"),
    "gzip file": (gzip.compress(_with()), "not UTF-8"),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_tampered_log_is_one_line_rc_2(tmp_path, name):
    data, expected = CASES[name]
    log = tmp_path / "requests.jsonl"
    log.write_bytes(data)
    r = CliRunner().invoke(app, ["replay", str(log)])
    assert r.exit_code == 2, (r.exit_code, r.output)
    assert "Traceback" not in r.output and r.exception is None or isinstance(r.exception, SystemExit)
    assert expected in " ".join(r.output.split()), r.output
    assert "reproduced" not in r.output
