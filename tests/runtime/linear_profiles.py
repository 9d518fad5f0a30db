"""Linear edge/cloud profiles of a test plan, shared by the runtime tests (built-in server and
Triton): ``profile_from_linear`` per side, plus an fp16-zstd payload sized like fp16."""

from __future__ import annotations

import json


def profiles(manifest, edge_ms=(2.0, 0.05), cloud_ms=(0.2, 0.005)):
    from janus_deploy.profile.table import profile_from_dict, profile_from_linear

    mi = {k: manifest.model[k] for k in ("name", "num_blocks", "embed_dim", "num_tokens", "num_prefix_tokens", "img_size")}
    levels = [(lv["policy"], lv["alpha"]) for lv in manifest.levels]
    out = []
    for a, b in (edge_ms, cloud_ms):
        d = profile_from_linear(mi, manifest.candidates, levels, a, b, plan_hash=manifest.hash).to_dict()
        for lv in d["levels"]:
            lv["payload"]["fp16-zstd"] = json.loads(json.dumps(lv["payload"]["fp16"]))
        out.append(profile_from_dict(d))
    return out
