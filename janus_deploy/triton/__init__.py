"""The cloud half on Triton Inference Server: repository export (:mod:`.repository`), a real
local ``tritonserver`` (:mod:`.server`), and what the edge needs to talk to it (:mod:`.dialect`).

Nothing here imports torch: a Triton host needs the plan's graphs and ONNX Runtime only.
"""
