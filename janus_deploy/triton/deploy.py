"""Kubernetes manifests that serve an exported repository with N Triton replicas behind one URL.

* ``kubernetes/triton.yaml``: a Deployment (``replicas``, readiness on ``/v2/health/ready``,
  liveness on ``/v2/health/live``, the repository read from ``--model-repository``) and a
  Service in front of it (HTTP 8000, gRPC 8001, metrics 8002);
* ``kserve/inferenceservice.yaml``: a KServe ``InferenceService`` with the Triton runtime
  (``modelFormat: triton``), the repository from ``storageUri``, min/max replicas;
* ``Dockerfile.triton-python``: the NGC Triton image plus ONNX Runtime and numpy, for
  ``--platform python`` repositories (the stock image runs ``onnxruntime`` and ``tensorrt`` ones).

``python -m janus_deploy.triton.deploy OUT`` writes them with the defaults (``deploy/`` in the
repository is that output, checked by a test); ``janus-deploy export-triton --manifests DIR``
writes them for the repository it exports. docs/scale-out.md explains the choices.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

TRITON_IMAGE = "nvcr.io/nvidia/tritonserver:24.10-py3"  # Triton 2.51, the version bundled in nvidia-pytriton 0.7.0
HTTP_PORT, GRPC_PORT, METRICS_PORT = 8000, 8001, 8002
KSERVE_HTTP_PORT = 8080  # the kserve-tritonserver runtime's --http-port
MOUNT = "/models"
DEFAULT_NAME = "janus-cloud"
DEFAULT_STORAGE = "s3://CHANGE-ME/janus-triton-repository"


@dataclass(frozen=True)
class DeployOptions:
    name: str = DEFAULT_NAME
    replicas: int = 2
    max_replicas: int = 8
    image: str = TRITON_IMAGE
    gpu: bool = False
    platform: str = "onnxruntime"
    storage_uri: str = DEFAULT_STORAGE  # where the exported repository is copied (object store or PVC path)
    cpu: str = "2"
    memory: str = "4Gi"


def _args(repository: str, http_port: int) -> list[str]:
    return [f"--model-repository={repository}", f"--http-port={http_port}", f"--grpc-port={GRPC_PORT}",
            f"--metrics-port={METRICS_PORT}", "--disable-auto-complete-config", "--strict-readiness=true",
            "--exit-timeout-secs=10"]


def _probe(path: str, port: int, period: int, failures: int) -> dict:
    return {"httpGet": {"path": path, "port": port}, "periodSeconds": period, "failureThreshold": failures,
            "timeoutSeconds": 2}


def _resources(o: DeployOptions) -> dict:
    limits: dict[str, str | int] = {"cpu": o.cpu, "memory": o.memory}
    if o.gpu:
        limits["nvidia.com/gpu"] = 1
    return {"requests": {"cpu": o.cpu, "memory": o.memory}, "limits": limits}


def kubernetes(o: DeployOptions) -> list[dict]:
    labels = {"app.kubernetes.io/name": o.name, "app.kubernetes.io/component": "janus-cloud-half"}
    container = {
        "name": "tritonserver",
        "image": o.image if o.platform != "python" else f"{o.name}-triton-python:latest",
        "command": ["tritonserver"],
        "args": _args(MOUNT, HTTP_PORT),
        "ports": [{"name": "http", "containerPort": HTTP_PORT}, {"name": "grpc", "containerPort": GRPC_PORT},
                  {"name": "metrics", "containerPort": METRICS_PORT}],
        # loading every model takes a while (seconds per model): readiness gates traffic until then
        "startupProbe": _probe("/v2/health/ready", HTTP_PORT, 5, 60),
        "readinessProbe": _probe("/v2/health/ready", HTTP_PORT, 5, 3),
        "livenessProbe": _probe("/v2/health/live", HTTP_PORT, 10, 3),
        "resources": _resources(o),
        "volumeMounts": [{"name": "repository", "mountPath": MOUNT, "readOnly": True},
                         {"name": "dshm", "mountPath": "/dev/shm"}],
    }
    deployment = {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": o.name, "labels": labels},
        "spec": {
            "replicas": o.replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels,
                             "annotations": {"prometheus.io/scrape": "true", "prometheus.io/port": str(METRICS_PORT)}},
                "spec": {
                    "containers": [container],
                    "volumes": [
                        # the exported repository (janus-deploy export-triton --weights copy for object stores)
                        {"name": "repository", "persistentVolumeClaim": {"claimName": f"{o.name}-repository"}},
                        # python-backend stubs exchange tensors through shared memory
                        {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "1Gi"}},
                    ],
                },
            },
        },
    }
    service = {
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": o.name, "labels": labels},
        "spec": {"selector": labels, "ports": [
            {"name": "http", "port": HTTP_PORT, "targetPort": "http"},
            {"name": "grpc", "port": GRPC_PORT, "targetPort": "grpc"},
            {"name": "metrics", "port": METRICS_PORT, "targetPort": "metrics"}]},
    }
    return [deployment, service]


def kserve(o: DeployOptions) -> dict:
    model = {
        "modelFormat": {"name": "triton"},
        "protocolVersion": "v2",
        "runtimeVersion": o.image.rsplit(":", 1)[-1],
        "storageUri": o.storage_uri,
        "args": ["--disable-auto-complete-config", "--strict-readiness=true"],
        "readinessProbe": _probe("/v2/health/ready", KSERVE_HTTP_PORT, 5, 3),
        "resources": _resources(o),
    }
    if o.platform == "python":
        model["image"] = f"{o.name}-triton-python:latest"
    return {
        "apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
        "metadata": {"name": o.name, "annotations": {"serving.kserve.io/enable-prometheus-scraping": "true"}},
        "spec": {"predictor": {"minReplicas": o.replicas, "maxReplicas": o.max_replicas,
                               "scaleMetric": "concurrency", "scaleTarget": 32, "model": model}},
    }


def dockerfile(o: DeployOptions) -> str:
    return (f"# Triton with ONNX Runtime inside the python-backend stubs: for `export-triton --platform python`\n"
            f"FROM {o.image}\n"
            "RUN pip install --no-cache-dir onnxruntime numpy\n")


def render(o: DeployOptions = DeployOptions()) -> dict[str, str]:
    """File name -> text of every manifest."""
    import yaml

    class Dumper(yaml.SafeDumper):
        def ignore_aliases(self, data):  # noqa: ARG002 - plain YAML, no &anchors for shared label dicts
            return True

    head = "# generated by `python -m janus_deploy.triton.deploy` (docs/scale-out.md); edit the options, not the file\n"
    return {
        "kubernetes/triton.yaml": head + yaml.dump_all(kubernetes(o), Dumper=Dumper, sort_keys=False),
        "kserve/inferenceservice.yaml": head + yaml.dump(kserve(o), Dumper=Dumper, sort_keys=False),
        "Dockerfile.triton-python": dockerfile(o),
    }


def write(out: str | Path, o: DeployOptions = DeployOptions()) -> list[Path]:
    out = Path(out)
    paths = []
    for rel, text in render(o).items():
        p = out / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
        paths.append(p)
    return paths


if __name__ == "__main__":
    for p in write(sys.argv[1] if len(sys.argv) > 1 else "deploy"):
        print(p)
