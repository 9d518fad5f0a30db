"""A tiny hand-written plan (N = 3 blocks, x0 = 9 tokens, D = 4) shared by the scheduler and
simulator tests. Every number below is written by hand, not computed by the code under test.

Token schedules (exponential, Eq. 1 with the merge cap of half the non-class tokens):
  α = 0   : [9, 9, 9, 9]
  α = 0.5 : raw [floor(2^1)=2, floor(2^0.5)=1, 1] → [9, 7, 6, 5]
  α = 1   : raw [4, 2, 1] → [9, 5, 3, 2]
  r = 1 (constant): [9, 8, 7, 6]
Candidates (k = 3): [0, 1, 2, 3, 4]; segments [[1,1],[2,2],[3,3],[4,3]].
Frame: img 4×4 → 3·4·4 = 48 bytes. fp16 payload at 1 ≤ s ≤ 3: x·D·2 + x·2 = 10·x bytes;
fp32: x·D·4 + x·4 = 20·x bytes.
"""

from __future__ import annotations

import copy

MODEL = {"name": "tiny", "num_blocks": 3, "embed_dim": 4, "num_tokens": 9,
         "num_prefix_tokens": 1, "img_size": 4}
CANDIDATES = [0, 1, 2, 3, 4]
SEGMENTS = [[1, 1], [2, 2], [3, 3], [4, 3]]
TOKENS = {
    ("exponential", 0.0): [9, 9, 9, 9],
    ("exponential", 0.5): [9, 7, 6, 5],
    ("exponential", 1.0): [9, 5, 3, 2],
    ("constant", 1.0): [9, 8, 7, 6],
}
EDGE_HEAD = {
    ("exponential", 0.0): [0, 100, 200, 300, 310],
    ("exponential", 0.5): [0, 100, 180, 250, 255],
    ("exponential", 1.0): [0, 100, 150, 190, 195],
    ("constant", 1.0): [0, 100, 190, 270, 280],
}
CLOUD_TAIL = {
    ("exponential", 0.0): [40, 30, 20, 10, 0],
    ("exponential", 0.5): [35, 25, 15, 8, 0],
    ("exponential", 1.0): [30, 20, 10, 5, 0],
    ("constant", 1.0): [38, 28, 18, 9, 0],
}
FRAME = 48


def _payload(tokens: list[int], per_token: int, enc: float = 0.0, dec: float = 0.0) -> dict:
    out = {}
    for s in CANDIDATES:
        b = FRAME if s == 0 else 0 if s == 4 else tokens[s] * per_token
        out[str(s)] = {"bytes": b, "encode_ms": enc if b else 0.0, "decode_ms": dec if b else 0.0}
    return out


def profile_dict(side: str, enc_ms: float = 0.0, dec_ms: float = 0.0) -> dict:
    """``side``: "edge" (real head_ms, zero tail) or "cloud" (zero head, real tail)."""
    levels = []
    for key, tokens in TOKENS.items():
        head = EDGE_HEAD[key] if side == "edge" else [0.0] * 5
        tail = CLOUD_TAIL[key] if side == "cloud" else [0.0] * 5
        levels.append({
            "policy": key[0], "alpha": key[1], "tokens": tokens,
            "head_ms": {str(s): float(v) for s, v in zip(CANDIDATES, head)},
            "tail_ms": {str(s): float(v) for s, v in zip(CANDIDATES, tail)},
            "payload": {"fp16": _payload(tokens, 10, enc_ms, dec_ms),
                        "fp32": _payload(tokens, 20, enc_ms, dec_ms)},
        })
    return copy.deepcopy({
        "format_version": 1, "kind": "janus-deploy/profile", "source": "measured",
        "provenance": "hand-written test plan", "plan_hash": None,
        "device": {"name": side}, "model": MODEL, "candidates": CANDIDATES,
        "segments": SEGMENTS, "levels": levels,
        "codecs": {"fp16": {"lossless": False}, "fp32": {"lossless": True}},
        "default_codec": "fp16",
    })


def profiles(enc_ms: float = 0.0, dec_ms: float = 0.0):
    from janus_deploy.profile.table import profile_from_dict

    return (profile_from_dict(profile_dict("edge", enc_ms, dec_ms)),
            profile_from_dict(profile_dict("cloud", enc_ms, dec_ms)))


def accuracy_table(values: dict) -> dict:
    """An accuracy-table JSON object from ``{(policy, alpha): accuracy}``."""
    return {"format_version": 1, "kind": "janus-deploy/accuracy", "plan_hash": None,
            "task": "test", "num_images": 10,
            "levels": [{"policy": p, "alpha": a, "accuracy": v, "agreement": None}
                       for (p, a), v in values.items()]}
