"""The small ONNX graphs a Triton repository adds around the plan's segment graphs.

* ``frame``: the split-0 input step, uint8 ``frame`` [B, H, W, 3] -> float32 ``image``
  [B, 3, H, W], normalised with the plan's mean/std exactly as :func:`janus_deploy.images.normalize`.
* ``fp16`` / ``int8``: the payload codecs' decode (:func:`janus_deploy.wire.codecs.decode_tokens`):
  FP16 tokens and size, or INT8 tokens times the per-token FP32 ``token_scale`` and FP16 size,
  -> float32 ``tokens_out``, ``size_out`` (the token count is symbolic: one graph per codec serves
  every level and split).
* ``int4``: :mod:`janus_deploy.wire.codecs`' 4-bit tokens, ``tokens_q4`` UINT8 [B, x, D/2]
  (low nibble = even channel) and ``group_scale`` FP16 [B, x, D/G]: nibbles − 8 times the
  group's scale, in float32 as the codec's numpy decode (the same values, bit for bit).
* ``fp32``: Identity for ensembles whose first tail segment does not read ``size`` (Triton
  refuses an ensemble input that no step consumes); other fp32 ensembles feed the segment directly.
* ``probe``: the edge's bandwidth probe as a V2 model (Triton has no ``/janus/probe``): uint8
  ``data`` [n] -> int64 ``bytes`` [1] (the number of bytes received).

Every graph is plain opset-17 ONNX: Triton's onnxruntime backend runs them as they are, and the
python-backend repository runs them with ONNX Runtime inside the stub like the segments.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
IR_VERSION = 8  # what the plan's graphs use; ONNX Runtime >= 1.14 and Triton >= 23.x read it

DECODE_CODECS = ("fp32", "fp16", "int8", "int4")


def _model(nodes, inputs, outputs, inits=(), name: str = "janus") -> onnx.ModelProto:
    graph = helper.make_graph(nodes, name, inputs, outputs, initializer=list(inits))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="janus-deploy")
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model)
    return model


def frame_graph(img_size: int, mean: Sequence[float], std: Sequence[float]) -> onnx.ModelProto:
    """uint8 [B, H, W, 3] -> (x / 255 - mean) / std as float32 [B, 3, H, W]."""
    inits = [numpy_helper.from_array(np.asarray(255.0, np.float32), "c255"),
             numpy_helper.from_array(np.asarray(mean, np.float32), "mean"),
             numpy_helper.from_array(np.asarray(std, np.float32), "std")]
    nodes = [helper.make_node("Cast", ["frame"], ["f"], to=TensorProto.FLOAT),
             helper.make_node("Div", ["f", "c255"], ["u"]),
             helper.make_node("Sub", ["u", "mean"], ["c"]),
             helper.make_node("Div", ["c", "std"], ["n"]),
             helper.make_node("Transpose", ["n"], ["image"], perm=[0, 3, 1, 2])]
    return _model(nodes,
                  [helper.make_tensor_value_info("frame", TensorProto.UINT8, ["batch", img_size, img_size, 3])],
                  [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 3, img_size, img_size])],
                  inits, "janus_decode_frame")


def decode_graph(codec: str, dim: int) -> onnx.ModelProto:
    """The wire tensors of ``codec`` -> float32 ``tokens_out`` [B, x, D], ``size_out`` [B, x, 1]."""
    tok = ["batch", "tokens", dim]
    col = ["batch", "tokens", 1]
    out = [helper.make_tensor_value_info("tokens_out", TensorProto.FLOAT, tok),
           helper.make_tensor_value_info("size_out", TensorProto.FLOAT, col)]
    if codec == "fp32":
        nodes = [helper.make_node("Identity", ["tokens"], ["tokens_out"]),
                 helper.make_node("Identity", ["size"], ["size_out"])]
        ins = [helper.make_tensor_value_info("tokens", TensorProto.FLOAT, tok),
               helper.make_tensor_value_info("size", TensorProto.FLOAT, col)]
    elif codec == "fp16":
        nodes = [helper.make_node("Cast", ["tokens"], ["tokens_out"], to=TensorProto.FLOAT),
                 helper.make_node("Cast", ["size"], ["size_out"], to=TensorProto.FLOAT)]
        ins = [helper.make_tensor_value_info("tokens", TensorProto.FLOAT16, tok),
               helper.make_tensor_value_info("size", TensorProto.FLOAT16, col)]
    elif codec == "int8":
        nodes = [helper.make_node("Cast", ["tokens"], ["q"], to=TensorProto.FLOAT),
                 helper.make_node("Mul", ["q", "token_scale"], ["tokens_out"]),
                 helper.make_node("Cast", ["size"], ["size_out"], to=TensorProto.FLOAT)]
        ins = [helper.make_tensor_value_info("tokens", TensorProto.INT8, tok),
               helper.make_tensor_value_info("token_scale", TensorProto.FLOAT, col),
               helper.make_tensor_value_info("size", TensorProto.FLOAT16, col)]
    elif codec == "int4":
        from janus_deploy.wire.codecs import int4_group

        groups = dim // int4_group(dim)
        inits = [numpy_helper.from_array(np.asarray(16, np.int32), "c16"),
                 numpy_helper.from_array(np.asarray(8.0, np.float32), "c8"),
                 numpy_helper.from_array(np.asarray([-1], np.int64), "last"),
                 numpy_helper.from_array(np.asarray([0, 0, groups, dim // groups], np.int64), "grouped"),
                 numpy_helper.from_array(np.asarray([0, 0, dim], np.int64), "flat")]
        nodes = [helper.make_node("Cast", ["tokens_q4"], ["qi"], to=TensorProto.INT32),
                 helper.make_node("Div", ["qi", "c16"], ["hi"]),
                 helper.make_node("Mul", ["hi", "c16"], ["hi16"]),
                 helper.make_node("Sub", ["qi", "hi16"], ["lo"]),
                 helper.make_node("Cast", ["lo"], ["lof"], to=TensorProto.FLOAT),
                 helper.make_node("Cast", ["hi"], ["hif"], to=TensorProto.FLOAT),
                 helper.make_node("Sub", ["lof", "c8"], ["lov"]),
                 helper.make_node("Sub", ["hif", "c8"], ["hiv"]),
                 helper.make_node("Unsqueeze", ["lov", "last"], ["lo1"]),
                 helper.make_node("Unsqueeze", ["hiv", "last"], ["hi1"]),
                 helper.make_node("Concat", ["lo1", "hi1"], ["pairs"], axis=-1),
                 helper.make_node("Reshape", ["pairs", "grouped"], ["q"]),
                 helper.make_node("Cast", ["group_scale"], ["sf"], to=TensorProto.FLOAT),
                 helper.make_node("Unsqueeze", ["sf", "last"], ["s1"]),
                 helper.make_node("Mul", ["q", "s1"], ["scaled"]),
                 helper.make_node("Reshape", ["scaled", "flat"], ["tokens_out"]),
                 helper.make_node("Cast", ["size"], ["size_out"], to=TensorProto.FLOAT)]
        ins = [helper.make_tensor_value_info("tokens_q4", TensorProto.UINT8, ["batch", "tokens", dim // 2]),
               helper.make_tensor_value_info("group_scale", TensorProto.FLOAT16, ["batch", "tokens", groups]),
               helper.make_tensor_value_info("size", TensorProto.FLOAT16, col)]
        return _model(nodes, ins, out, inits, name="janus_decode_int4")
    else:
        raise ValueError(f"no decode graph for codec {codec!r} (have {', '.join(DECODE_CODECS)})")
    return _model(nodes, ins, out, name=f"janus_decode_{codec}")


def probe_graph() -> onnx.ModelProto:
    """uint8 ``data`` [n] -> int64 ``bytes`` [1]."""
    shape = numpy_helper.from_array(np.asarray([1], np.int64), "one")
    nodes = [helper.make_node("Size", ["data"], ["n"]), helper.make_node("Reshape", ["n", "one"], ["bytes"])]
    return _model(nodes, [helper.make_tensor_value_info("data", TensorProto.UINT8, ["n"])],
                  [helper.make_tensor_value_info("bytes", TensorProto.INT64, [1])], [shape], "janus_probe")


__all__ = ["DECODE_CODECS", "decode_graph", "frame_graph", "probe_graph"]
