"""Edge RSS under a 4 GiB streaming answer (issue 21 item 3): a fake V2 server (the one of
tests/runtime/test_edge_answers.py) in front of the built-in server streams 4 GiB as one answer;
prints the edge process's peak-RSS growth over that request and how much the server got to write.
Run: PYTHONPATH=$PWD python tools/bench_answer_size.py"""
import resource, sys, tempfile, time
from pathlib import Path
sys.path[:0] = ["tests/runtime"]
from test_edge_answers import Fake, edge, FRAME
from janus_deploy.backends import build_engines, load_runner
from janus_deploy.model.load import ModelSpec
from janus_deploy.plan.export import ExportConfig, export_plan
from janus_deploy.runtime.server import BackgroundServer, create_app
root = Path(tempfile.mkdtemp())
m, _ = export_plan(ModelSpec("vit_tiny_patch16_224"), root / "plan", ExportConfig(k=3, levels=3))
build_engines(m, root / "engines", "ort")
local = load_runner(m, root / "engines", threads=1)
plan = (m, root / "plan", root / "engines")
with BackgroundServer(create_app(root / "plan", root / "engines", threads=1, runner=local)) as real:
    f = Fake(real.url, "huge")
    with edge(plan, local, f.url) as rt:
        rt.infer(FRAME, force=(1, 3))  # warm
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        t = time.perf_counter()
        res = rt.infer(FRAME, force=(1, 3))
        dt = time.perf_counter() - t
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(f"edge peak RSS {peak/1024:.0f} MB (growth {(peak-base)/1024:.1f} MB) in {dt*1e3:.0f} ms; "
          f"server wrote {f.sent_bytes/2**20:.0f} MiB of the 4096 MiB answer; fallback: {res.fallback}")
