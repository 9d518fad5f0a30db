"""int8 (Q/DQ graphs) against fp32 per level on ONNX Runtime (this CPU): latency of the whole
chain and the accuracy engines.json records.

    python tools/bench_int8.py --plan PLAN --calibration DIR [--runs 20] [--threads 1] [--out DIR]

Builds ``--backend ort`` fp32 and int8 engines (int8: ``build-engines --precision int8
--calibration DIR``), then times every level's segment chain on one held-out image, batch 1,
median of ``--runs`` after one warm-up run, the runners alternating per level so that load on a
shared machine hits all alike. Columns: fp32 as the ort backend runs it (weights shared between
sessions, prepacking off), fp32 with private prepacked weights (like for like with int8, whose
sessions own and prepack their int8 weights), int8. Ratios within one run are what to compare.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    from janus_deploy.backends import build_engines, load_runner, run_segments
    from janus_deploy.backends.ort import OrtRunner
    from janus_deploy.backends.qdq import calibration_frames, split
    from janus_deploy.plan import Manifest

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--plan", required=True)
    ap.add_argument("--calibration", required=True, help="folder of calibration images")
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=None, help="engine folders go here (default: a temporary folder)")
    args = ap.parse_args(argv)
    m = Manifest.load(args.plan)
    out = Path(args.out or tempfile.mkdtemp(prefix="bench-int8-"))
    build_engines(m, out / "fp32", "ort")
    meta = build_engines(m, out / "int8", "ort", precision="int8", calibration=args.calibration)
    fp32, int8 = load_runner(m, out / "fp32", threads=args.threads), load_runner(m, out / "int8", threads=args.threads)
    # the ort backend shares fp32 weights between sessions with prepacking off; int8 sessions own
    # their (int8) weights and prepack them: fp32 prepacked (private weights) is the like-for-like column
    fp32p = OrtRunner(m, threads=args.threads, share_weights=False, disable_prepacking=False)
    x = split(calibration_frames(m, args.calibration))[1][:1]
    print(f"{m.model['name']} @ {m.model['img_size']}: {len(m.levels)} levels, batch 1, {args.threads} thread(s), "
          f"median of {args.runs}; accuracy on {meta['calibration']['heldout_images']} held-out images")
    print(f"{'level':>5} {'alpha':>6} {'fp32 ms':>9} {'fp32pp ms':>9} {'int8 ms':>9} {'int8/fp32':>9} {'int8/pp':>8} "
          f"{'top-1 agr':>9} {'cos min':>8}")
    for li, acc in enumerate(meta["int8_accuracy"]):
        n = len(m.levels[li]["segments"])
        times: dict[str, list[float]] = {"fp32": [], "fp32pp": [], "int8": []}
        for r in (fp32, fp32p, int8):
            run_segments(r, li, 0, n, [x])  # warm-up (sessions created)
        for _ in range(args.runs):
            for name, r in (("fp32", fp32), ("fp32pp", fp32p), ("int8", int8)):
                t = time.perf_counter()
                run_segments(r, li, 0, n, [x])
                times[name].append((time.perf_counter() - t) * 1e3)
        a, p, b = (statistics.median(times[k]) for k in ("fp32", "fp32pp", "int8"))
        print(f"{li:>5} {m.levels[li]['alpha']:>6.3f} {a:>9.2f} {p:>9.2f} {b:>9.2f} {b / a:>9.3f} {b / p:>8.3f} "
              f"{acc['top1_agreement']:>9.3f} {acc['cosine_min']:>8.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
