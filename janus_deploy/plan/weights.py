"""One external-data weight file shared by every graph of a plan.

Pruning never changes weights, so every level's graphs hold the same tensors. Each large
initializer is stored once in ``weights.bin`` (deduplicated by content) and renamed to
``w_<sha256 prefix>``: the same tensor has the same name in every graph, which also lets ONNX
Runtime share one in-memory copy across sessions (``SessionOptions.add_initializer``).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

WEIGHTS_FILE = "weights.bin"
INDEX_FILE = "weights.json"
MIN_EXTERNAL_BYTES = 128  # smaller tensors stay inside the graph
ALIGN = 64


class SharedWeights:
    """Append-only content-addressed store of tensors in ``plan_dir/weights.bin``."""

    def __init__(self, plan_dir: Path) -> None:
        self.dir = Path(plan_dir)
        self.bin = self.dir / WEIGHTS_FILE
        self.index_path = self.dir / INDEX_FILE
        self.index: dict[str, list[int]] = {}
        if self.index_path.is_file() and self.bin.is_file():
            try:
                self.index = json.loads(self.index_path.read_text())
            except ValueError:  # a damaged index: start the weight file afresh (graphs are redone)
                self.index = {}
        if not self.index:
            self.bin.unlink(missing_ok=True)

    def put(self, data: bytes) -> tuple[str, int, int]:
        """Store ``data`` once; return (sha256, offset, length)."""
        sha = hashlib.sha256(data).hexdigest()
        if sha not in self.index:
            with open(self.bin, "ab") as f:
                offset = f.tell()
                pad = (-offset) % ALIGN
                f.write(b"\0" * pad)
                f.write(data)
            self.index[sha] = [offset + pad, len(data)]
        offset, length = self.index[sha]
        return sha, offset, length

    def save_index(self) -> None:
        self.index_path.write_text(json.dumps(self.index))

    def externalize(self, model: onnx.ModelProto) -> onnx.ModelProto:
        """Move large initializers of ``model`` into the shared file, renamed by content."""
        graph = model.graph
        rename: dict[str, str] = {}
        keep: list[onnx.TensorProto] = []
        seen: set[str] = set()
        for init in graph.initializer:
            array = numpy_helper.to_array(init)
            if array.nbytes < MIN_EXTERNAL_BYTES:
                keep.append(init)
                continue
            data = np.ascontiguousarray(array).tobytes()
            sha, offset, length = self.put(data)
            name = f"w_{sha[:20]}"
            rename[init.name] = name
            if name in seen:  # the same tensor twice in one graph: keep one initializer
                continue
            seen.add(name)
            tensor = onnx.TensorProto()
            tensor.name = name
            tensor.data_type = init.data_type
            tensor.dims.extend(init.dims)
            tensor.data_location = onnx.TensorProto.EXTERNAL
            for key, value in (("location", WEIGHTS_FILE), ("offset", str(offset)), ("length", str(length))):
                entry = tensor.external_data.add()
                entry.key, entry.value = key, value
            keep.append(tensor)
        del graph.initializer[:]
        graph.initializer.extend(keep)
        _rename_inputs(graph, rename)
        return model


def _rename_inputs(graph: onnx.GraphProto, rename: dict[str, str]) -> None:
    for node in graph.node:
        for i, name in enumerate(node.input):
            if name in rename:
                node.input[i] = rename[name]
        for attr in node.attribute:  # subgraphs (If/Loop) do not occur in ViTs, but stay correct
            if attr.type == onnx.AttributeProto.GRAPH:
                _rename_inputs(attr.g, rename)


def external_initializers(model: onnx.ModelProto) -> dict[str, tuple[int, int, int, list[int]]]:
    """name -> (data_type, offset, length, dims) for every externally stored initializer."""
    out = {}
    for init in model.graph.initializer:
        if init.data_location == onnx.TensorProto.EXTERNAL:
            info = {e.key: e.value for e in init.external_data}
            out[init.name] = (init.data_type, int(info["offset"]), int(info["length"]), list(init.dims))
    return out
