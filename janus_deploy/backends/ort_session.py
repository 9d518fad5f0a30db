"""The ONNX Runtime session options of every janus-deploy session: one function, two users.

``janus_deploy.backends.ort`` (the runner) calls it, then adds what only it needs (the shared
CPU arena, external-data folder, shared weights). The Triton python-backend model
(``janus_deploy/triton/python_model.py``) runs inside Triton's stub, which has numpy and
onnxruntime but not janus-deploy: ``export-triton`` writes this function's source into each
``model.py`` in place of its import line (``triton.repository.python_model_source``).
So this module must stay self-contained: no imports, ``ort`` comes as an argument.
"""


def session_options(ort, threads, prepacking=False):
    """All graph optimisations, ``threads`` intra-op threads that do not spin (segments run one
    after another in different sessions: a finished session's spinning workers would steal the
    next segment's cores), one inter-op thread, errors-only logging, no memory pattern, and no
    weight pre-packing unless ``prepacking``."""
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.intra_op_num_threads = int(threads)
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    opts.enable_mem_pattern = False
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if not prepacking:
        opts.add_session_config_entry("session.disable_prepacking", "1")
    return opts
