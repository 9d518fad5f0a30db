"""Calibration: accuracy of every pruning level of a plan, and a small offline task to measure it on.

* :mod:`janus_deploy.calibrate.digits`: a deterministic cluttered-digits task (sklearn's bundled
  digits, no download) and the small ViT trained for it (``calibration/digits_vit.safetensors``).
* :mod:`janus_deploy.calibrate.accuracy`: ``calibrate(plan, frames, labels)`` -> the accuracy
  table (``kind: "janus-deploy/accuracy"``) with the PyTorch model, ``calibrate_engines(plan,
  engine_dir, frames, labels)`` the same through built engines (fp32, int8 Q/DQ, TensorRT),
  ``load_accuracy`` / ``save_accuracy``.
"""

from janus_deploy.calibrate.accuracy import (
    AccuracyError,
    calibrate,
    calibrate_engines,
    labelled_files,
    load_accuracy,
    load_labelled_folder,
    save_accuracy,
    validate_accuracy,
)
from janus_deploy.calibrate.digits import (
    SMALL_MODEL_CHECKPOINT,
    SMALL_MODEL_NAME,
    SMALL_MODEL_OVERRIDES,
    TaskError,
    make_digits,
    write_image_folder,
)

__all__ = [
    "AccuracyError", "calibrate", "calibrate_engines", "labelled_files", "load_accuracy", "load_labelled_folder",
    "save_accuracy", "validate_accuracy",
    "SMALL_MODEL_CHECKPOINT", "SMALL_MODEL_NAME", "SMALL_MODEL_OVERRIDES", "TaskError", "make_digits",
    "write_image_folder",
]
