"""Runtime: the cloud V2 inference server and the edge runtime that splits each request.

* :mod:`janus_deploy.wire.v2`: KServe V2 / Triton binary-tensor bodies.
* :mod:`janus_deploy.runtime.server`: ``create_app`` / ``serve`` (FastAPI + uvicorn).
* :mod:`janus_deploy.runtime.edge`: ``EdgeRuntime`` (decide, run the head, send, fall back).
* :mod:`janus_deploy.net.shaper`: uplink shaping that replays a bandwidth trace.

Heavy imports (fastapi, httpx, onnxruntime) stay inside the sub-modules.
"""
