"""Triton python-backend model: runs the ONNX graph beside it (``model.onnx``) with ONNX Runtime,
or a chain of graphs (the config parameter ``graphs``, e.g. a fused tail: decode step, then its
segments; each graph's ``X_out`` outputs feed the next graph's ``X`` inputs).

This file is copied verbatim into every non-ensemble model of a ``--platform python`` repository
as ``<model>/1/model.py``; it needs only numpy and onnxruntime in the stub's Python (not
janus-deploy, not torch). The session is set up like janus-deploy's ORT runner
(``janus_deploy.backends.ort``): all graph optimisations, no spinning intra-op threads (segments
run one after another), no pre-packing, ``intra_op_threads`` from the model config's parameters.

Tensors cross the stub boundary by DLPack (``np.from_dlpack`` / ``Tensor.from_dlpack``), not
``as_numpy()``: the bundled stub's numpy conversion is built against the numpy 1.x ABI and
returns wrong values under numpy 2, DLPack works under both.

Dynamic batching hands ``execute`` several requests at once; requests whose inputs have the same
shapes (beyond the batch dimension) are concatenated into one ONNX Runtime run and the outputs
split back, so Triton's batching really batches.

Server timing: when the model's configuration declares the output ``janus_server_ms`` (FP32
``[1]``, the fused tails do), every answer carries the milliseconds from the start of ``execute``
to the end of its group's run: what this model spent on the request, its batch included (decode
+ tail). Triton's queue before ``execute`` is not in it: the python backend does not see it.
"""

import json
import os
import time

import numpy as np

try:  # present inside Triton's python-backend stub only
    import triton_python_backend_utils as pb_utils
except ImportError:  # imported outside Triton (tests read the helpers)
    pb_utils = None


# The session options are janus_deploy.backends.ort_session's; export writes that function's
# source in place of the next line (the stub cannot import janus-deploy).
from janus_deploy.backends.ort_session import session_options  # noqa: E402 - replaced at export by the source JANUS-SESSION-OPTIONS

TIMING = "janus_server_ms"  # the optional timing output (module docstring); dialect.SERVER_TIMING (the stub cannot import it)


def _param(config, key, default):
    value = (config.get("parameters") or {}).get(key, {}).get("string_value")
    return default if value in (None, "") else value


def chain_feed(outputs, wanted):
    """The next graph's feed from the previous graph's named outputs (``tokens_out`` -> ``tokens``)."""
    named = {(n[:-4] if n.endswith("_out") else n): v for n, v in outputs.items()}
    return {n: named[n] for n in wanted}


def group_requests(shapes):
    """Indices of requests grouped by their inputs' non-batch shapes (order kept)."""
    groups = {}
    for i, s in enumerate(shapes):
        groups.setdefault(s, []).append(i)
    return list(groups.values())


class TritonPythonModel:
    def initialize(self, args):
        import onnxruntime as ort

        config = json.loads(args["model_config"])
        here = os.path.join(args["model_repository"], str(args["model_version"]))
        threads = int(_param(config, "intra_op_threads", "1"))
        providers = ["CPUExecutionProvider"]
        if args.get("model_instance_kind") == "GPU" and "CUDAExecutionProvider" in ort.get_available_providers():
            providers = [("CUDAExecutionProvider", {"device_id": int(args.get("model_instance_device_id") or 0)})]
        files = [f.strip() for f in _param(config, "graphs", "model.onnx").split(",") if f.strip()]
        self.sessions = [ort.InferenceSession(os.path.join(here, f), session_options(ort, threads), providers=providers)
                         for f in files]
        self.feeds = [[i.name for i in s.get_inputs()] for s in self.sessions]
        self.out_names = [[o.name for o in s.get_outputs()] for s in self.sessions]
        self.inputs = [i["name"] for i in config["input"]]
        self.outputs = [o["name"] for o in config["output"] if o["name"] != TIMING]
        self.timing = any(o["name"] == TIMING for o in config["output"])
        self.batched = int(config.get("max_batch_size", 0)) > 0
        self.name = config["name"]

    def execute(self, requests):
        t0 = time.perf_counter()
        arrays = [[np.from_dlpack(pb_utils.get_input_tensor_by_name(r, n)) for n in self.inputs] for r in requests]
        responses = [None] * len(requests)
        groups = (group_requests([tuple(a.shape[1:] for a in arrs) for arrs in arrays]) if self.batched
                  else [[i] for i in range(len(requests))])
        for idx in groups:
            try:
                if len(idx) == 1:
                    feed = dict(zip(self.inputs, arrays[idx[0]]))
                else:
                    feed = {n: np.concatenate([arrays[i][k] for i in idx]) for k, n in enumerate(self.inputs)}
                outs = self._run(feed)
            except Exception as exc:  # noqa: BLE001 - one error response per request, the model stays up
                err = pb_utils.TritonError(f"{self.name}: {type(exc).__name__}: {exc}")
                for i in idx:
                    responses[i] = pb_utils.InferenceResponse(output_tensors=[], error=err)
                continue
            ms = (time.perf_counter() - t0) * 1e3
            start = 0
            for i in idx:
                b = arrays[i][0].shape[0] if self.batched else 0
                tensors = []
                for name, out in zip(self.outputs, outs):
                    part = out[start:start + b] if self.batched else out
                    tensors.append(pb_utils.Tensor.from_dlpack(name, np.ascontiguousarray(part)))
                if self.timing:
                    tensors.append(pb_utils.Tensor.from_dlpack(TIMING, np.full((b, 1) if self.batched else (1,), ms, np.float32)))
                responses[i] = pb_utils.InferenceResponse(output_tensors=tensors)
                start += b
        return responses

    def _run(self, feed):
        last = len(self.sessions) - 1
        for i, sess in enumerate(self.sessions):
            args = {n: feed[n] for n in self.feeds[i]}
            if i == last:
                return sess.run(self.outputs, args)
            feed = chain_feed(dict(zip(self.out_names[i], sess.run(None, args))), self.feeds[i + 1])
        return None

    def finalize(self):
        self.sessions = []


__all__ = ["TIMING", "TritonPythonModel", "chain_feed", "group_requests", "session_options"]
