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

With the config parameter ``janus_frame_decode`` ("H,W") the model first decodes the
``frame_coded`` input (a frame codec's JPEG or PNG images, one per row, zero-padded:
:mod:`janus_deploy.wire.codecs`) into the uint8 ``frame`` [B, H, W, 3] with simplejpeg
(libjpeg-turbo) or Pillow, each image's size read from its header and checked before it is
decoded; without graphs that frame is the output (the ``janus_decode_coded`` step), else it
feeds the first graph (a fused split-0 tail).

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


def decode_coded(coded, height, width):
    """``frame_coded`` UINT8 [B, L] -> uint8 [B, height, width, 3] (as janus_deploy.wire.codecs.decode_frame)."""
    import io

    coded = np.asarray(coded)
    if coded.dtype != np.uint8 or coded.ndim != 2:
        raise ValueError(f"frame_coded must be UINT8 [B, L], got {coded.dtype} {list(coded.shape)}")
    out = np.empty((coded.shape[0], height, width, 3), np.uint8)
    for i, row in enumerate(coded):
        data = row.tobytes()
        if data[:2] == b"\xff\xd8":
            import simplejpeg

            h, w, _, _ = simplejpeg.decode_jpeg_header(data)
            if (h, w) != (height, width):
                raise ValueError(f"frame_coded[{i}]: the JPEG is {w}x{h}, the model takes {width}x{height}")
            out[i] = simplejpeg.decode_jpeg(data, colorspace="RGB")
        elif data[:8] == b"\x89PNG\r\n\x1a\n":
            from PIL import Image

            with Image.open(io.BytesIO(data), formats=["PNG"]) as im:
                if im.size != (width, height):
                    raise ValueError(f"frame_coded[{i}]: the PNG is {im.size[0]}x{im.size[1]}, the model takes {width}x{height}")
                out[i] = np.asarray(im.convert("RGB"))
        else:
            raise ValueError(f"frame_coded[{i}]: neither a JPEG nor a PNG image")
    return out


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
        hw = _param(config, "janus_frame_decode", "")
        self.frame_hw = tuple(int(v) for v in hw.split(",")) if hw else None
        default = "" if self.frame_hw else "model.onnx"
        files = [f.strip() for f in (_param(config, "graphs", default) or "").split(",") if f.strip()]
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
        if self.frame_hw is not None:
            frame = decode_coded(feed.pop("frame_coded"), *self.frame_hw)
            if not self.sessions:
                return [frame]
            feed = dict(feed, frame=frame)
        last = len(self.sessions) - 1
        for i, sess in enumerate(self.sessions):
            args = {n: feed[n] for n in self.feeds[i]}
            if i == last:
                return sess.run(self.outputs, args)
            feed = chain_feed(dict(zip(self.out_names[i], sess.run(None, args))), self.feeds[i + 1])
        return None

    def finalize(self):
        self.sessions = []


__all__ = ["TIMING", "TritonPythonModel", "chain_feed", "decode_coded", "group_requests", "session_options"]
