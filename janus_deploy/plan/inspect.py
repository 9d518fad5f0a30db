"""A readable summary of a plan (what `janus-deploy inspect` shows)."""

from __future__ import annotations

from typing import Any

from janus_deploy.plan.manifest import GraphEntry, Manifest


def summarize(manifest: Manifest) -> dict[str, Any]:
    """Levels, token schedules, candidates, payload sizes per split, files and sizes."""
    d = manifest.data
    files = manifest.graph_entries()
    graph_bytes = sum(GraphEntry.of(e).bytes or 0 for e in files)
    weight_bytes = int(manifest.weights_file.bytes or 0)  # an exported manifest always records it
    return {
        "plan_hash": manifest.hash,
        "model": d["model"],
        "policy": d["policy"],
        "candidates": manifest.candidates,
        "segments": [list(b) for b in manifest.segment_blocks],
        "levels": [
            {
                "index": lv.index, "policy": lv.policy, "alpha": lv.alpha, "tokens": list(lv.tokens),
                "capped_blocks": list(lv.capped_blocks),
                "payload_bytes_fp32": {s: p["bytes"].get("float32", p["bytes"].get("uint8"))
                                       for s, p in lv.payload.items()},
            }
            for lv in manifest.plan_levels
        ],
        "files": {"graphs": len(files), "level_free_graphs": len(manifest.level_free_graphs), "graph_bytes": graph_bytes,
                  "weights_bytes": weight_bytes,
                  "total_bytes": graph_bytes + weight_bytes,
                  "size_vs_weights": round((graph_bytes + weight_bytes) / int(manifest.model_info.weight_bytes or 0), 4)},
    }
