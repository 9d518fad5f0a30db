"""One ONNX Runtime session-options function for the ORT runner and the Triton python model."""

from __future__ import annotations

import onnxruntime as ort

from janus_deploy.backends.ort_session import session_options
from janus_deploy.triton.repository import python_model_source


def _settings(opts):
    return (opts.graph_optimization_level, opts.intra_op_num_threads, opts.inter_op_num_threads,
            opts.log_severity_level, opts.enable_mem_pattern,
            opts.get_session_config_entry("session.intra_op.allow_spinning"),
            opts.get_session_config_entry("session.disable_prepacking"))


def test_triton_model_carries_the_packages_function_without_importing_it():
    src = python_model_source()
    assert "import janus_deploy" not in src and "from janus_deploy" not in src  # the stub has no package
    ns: dict = {"__name__": "triton_model"}
    exec(compile(src, "model.py", "exec"), ns)
    assert _settings(ns["session_options"](ort, 3)) == _settings(session_options(ort, 3))
    assert _settings(session_options(ort, 3)) == (ort.GraphOptimizationLevel.ORT_ENABLE_ALL, 3, 1, 3, False,
                                                  "0", "1")


def test_prepacking_is_the_only_switch():
    on = session_options(ort, 1, prepacking=True)
    try:
        value = on.get_session_config_entry("session.disable_prepacking")
    except RuntimeError:  # ORT raises for an entry never set
        value = ""
    assert value in ("", "0")
    assert session_options(ort, 1).get_session_config_entry("session.disable_prepacking") == "1"
