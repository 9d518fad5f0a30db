"""The export's graph writer: traces a segment into ONNX, stores its large weights once, and
keeps what an interrupted or repeated export can reuse.

:class:`GraphWriter` owns the reuse rule (a graph whose key and file sha256 match an earlier
export of the same model is kept), the resume state (``export-progress.json``, written after
every new graph), and the counters (graphs exported, reused, seconds per graph, progress). It
knows nothing of levels or manifests: :mod:`janus_deploy.plan.export` decides which graphs a plan
holds and assembles the manifest from the entries this returns.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import onnx

from janus_deploy.model.load import file_sha256
from janus_deploy.plan.manifest import Manifest, PlanError
from janus_deploy.plan.weights import INDEX_FILE, WEIGHTS_FILE, SharedWeights

STATE_FILE = "export-progress.json"  # graphs done so far; removed when the manifest is written
ProgressFn = Callable[[str, int, int], None]
GraphFn = Callable[[], onnx.ModelProto]


class GraphWriter:
    """Writes a plan's graphs into ``out_dir`` (see the module docstring). ``weights_key`` names
    the model the graphs come from: entries of an earlier export of another model are never
    reused, and its weight file is removed. ``total`` graphs are expected (for ``progress``)."""

    def __init__(self, out_dir: Path, weights_key: str, total: int, progress: ProgressFn | None = None) -> None:
        self.out_dir = out_dir
        self.weights_key = weights_key
        self.total = total
        self.progress = progress
        self.state_path = out_dir / STATE_FILE
        self.old = previous_entries(out_dir, self.state_path, weights_key)
        if not self.old:  # another model (or nothing) was exported here: its weights are of no use
            for stale in (WEIGHTS_FILE, INDEX_FILE):
                (out_dir / stale).unlink(missing_ok=True)
        self.weights = SharedWeights(out_dir)
        self.can_reuse = bool(self.weights.index)  # offsets of kept graphs are only valid in the old weight file
        self.state: dict[str, Any] = {"weights_key": weights_key, "entries": {}}
        self.done = self.exported = self.reused = 0
        self.seconds: list[float] = []

    def reusable(self, fname: str, key: str) -> dict[str, Any] | None:
        """The earlier entry of ``key`` if its file is still there, unchanged."""
        prior = self.old.get(key)
        path = self.out_dir / fname
        if self.can_reuse and prior and path.is_file() and file_sha256(path) == prior["sha256"]:
            return prior
        return None

    def write(self, fname: str, key: str, graph: GraphFn, ins: list[dict[str, Any]], outs: list[dict[str, Any]]
              ) -> dict[str, Any]:
        """The manifest entry of graph ``fname``: reused, or made by ``graph()``, its weights
        stored once, saved, and checkpointed in the resume state."""
        entry = self.reusable(fname, key)
        if entry is not None:
            self.reused += 1
        else:
            entry = self._save(fname, key, graph, ins, outs)
        self.done += 1
        if self.progress:
            self.progress(fname, self.done, self.total)
        return entry

    def _save(self, fname: str, key: str, graph: GraphFn, ins: list[dict[str, Any]], outs: list[dict[str, Any]]
              ) -> dict[str, Any]:
        path = self.out_dir / fname
        t0 = time.perf_counter()
        onnx.save(self.weights.externalize(graph()), str(path))
        self.seconds.append(time.perf_counter() - t0)
        self.exported += 1
        entry = {"file": fname, "key": key, "sha256": file_sha256(path), "bytes": path.stat().st_size,
                 "inputs": ins, "outputs": outs}
        # checkpoint progress so an interrupted export resumes from here
        self.weights.save_index()
        self.state["entries"][key] = entry
        self.state_path.write_text(json.dumps(self.state))
        return entry

    def weights_entry(self) -> dict[str, Any]:
        """The manifest's ``weights`` entry (after the index is saved)."""
        self.weights.save_index()
        b = self.weights.bin
        return {"file": b.name, "bytes": b.stat().st_size, "sha256": file_sha256(b)}

    def finish(self, manifest: Manifest) -> dict[str, Any]:
        """Graphs the manifest no longer lists removed, the manifest saved, the resume state
        dropped; the export statistics."""
        remove_stale(manifest, self.out_dir)
        manifest.save(self.out_dir)
        self.state_path.unlink(missing_ok=True)
        return {"exported": self.exported, "reused": self.reused, "seconds_per_graph": self.seconds}


def previous_entries(out_dir: Path, state_path: Path, weights_key: str) -> dict[str, dict[str, Any]]:
    """Graph entries of an earlier export of the same model into ``out_dir``: from its manifest,
    and from the progress file an interrupted export leaves behind."""
    old: dict[str, dict[str, Any]] = {}
    try:
        prev = Manifest.load(out_dir)
        if prev.model_info.weights_key == weights_key:
            old = {entry["key"]: entry for entry in prev.graph_entries()}
    except PlanError:
        pass
    try:
        state = json.loads(state_path.read_text())
        if state.get("weights_key") == weights_key:
            old.update(state["entries"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return old


def remove_stale(manifest: Manifest, plan_dir: Path) -> None:
    """Delete graphs of an earlier export in ``plan_dir`` that the new manifest no longer lists."""
    live = set(manifest.graph_sha256)  # every graph file the manifest lists
    for path in [*plan_dir.glob("L*_*.onnx"), *plan_dir.glob("G_S*.onnx")]:
        if path.name not in live:
            path.unlink()


__all__ = ["STATE_FILE", "GraphWriter", "ProgressFn", "previous_entries", "remove_stale"]
