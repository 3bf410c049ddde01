"""Inference runtime (DESIGN §4): :class:`WorldModel` over pluggable backends, step export, benchmarks.

Importing this package needs torch but never onnxruntime or torch-tensorrt; those
are imported when their backend is built.
"""

from crcm_robotics.runtime.backends import BACKENDS, BackendUnavailable, canonical_backend
from crcm_robotics.runtime.inputs import InputError
from crcm_robotics.runtime.world_model import ImagineResult, WorldModel

__all__ = ["BACKENDS", "BackendUnavailable", "ImagineResult", "InputError", "WorldModel", "canonical_backend"]
