"""Encoder registry: `register_encoder`, `create_encoder`, `list_encoders`, `get_spec` (timm/open_clip habit)."""
from __future__ import annotations

import inspect
import logging
import os
import sys

from leakcore.encoders.base import Encoder, EncoderSpec, l2_normalise
from leakcore.encoders.registry import _REGISTRY, _Entry, register_encoder
from leakcore.errors import EncoderOptionError, UnknownName, WeightsUnavailable

log = logging.getLogger(__name__)


def _entry(name: str) -> _Entry:
    _load_families()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownName(f"unknown encoder {name!r}; valid encoders: {', '.join(sorted(_REGISTRY))}") from None


def encoder_options(name: str) -> list[str]:
    """The options `create_encoder(name, ...)` accepts (the builder's keyword parameters)."""
    params = list(inspect.signature(_entry(name).build).parameters.values())[2:]  # after (spec, device)
    return [p.name for p in params if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)]


def _strict(name: str, overrides: dict) -> dict:
    """Overrides without `None` values; an option the encoder does not take is an error naming the valid ones."""
    valid = encoder_options(name)
    unknown = sorted(set(overrides) - set(valid))
    if unknown:
        raise EncoderOptionError(f"encoder {name!r} has no option {', '.join(map(repr, unknown))}; "
                                 f"valid options: {', '.join(valid) or 'none'}")
    return {k: v for k, v in overrides.items() if v is not None}


def _call_check(entry: _Entry, overrides: dict) -> str | None:
    accepted = inspect.signature(entry.check).parameters
    return entry.check(**{k: v for k, v in overrides.items() if k in accepted})


def get_spec(name: str) -> EncoderSpec:
    """The registered spec (dimension, input size, weights, default thresholds) of an encoder."""
    return _entry(name).spec


def encoder_names() -> list[str]:
    _load_families()
    return sorted(_REGISTRY)


def list_encoders(**overrides) -> list[dict]:
    """Every encoder with whether it can run here now, and why not (overrides apply where an encoder takes them)."""
    rows = []
    for name in encoder_names():
        entry = _REGISTRY[name]
        why_not = _call_check(entry, {k: v for k, v in overrides.items() if v is not None and k in encoder_options(name)})
        rows.append({
            "name": name, "family": entry.spec.family, "dim": entry.spec.dim,
            "input_size": entry.spec.input_size, "available": why_not is None, "why_not": why_not or "",
            "weights": entry.spec.weights, "hard": entry.spec.hard_threshold, "soft": entry.spec.soft_threshold,
            "thresholds_from": entry.spec.thresholds_from, "calibrated": entry.spec.calibrated,
            "options": encoder_options(name),
        })
    return rows


# what a Linux machine shows when a GPU torch could use is there: NVIDIA's driver (also inside a container given the
# GPU), WSL2's GPU device, AMD's ROCm device
_GPU_MARKS = ("/proc/driver/nvidia/version", "/dev/nvidia0", "/dev/dxg", "/dev/kfd")


def default_device() -> str:
    """cuda when torch sees a GPU, else cpu. On Linux with none of a GPU's device files torch cannot see one: cpu,
    without importing torch (2-5 s; a page that reads stored embeddings, as the Impact page's k-NN probe does, never
    needs it)."""
    if "torch" not in sys.modules and sys.platform.startswith("linux") and not any(map(os.path.exists, _GPU_MARKS)):
        return "cpu"
    try:
        import torch
    except ImportError:
        return "cpu"
    return "cuda" if torch.cuda.is_available() else "cpu"


def create_encoder(name: str, device: str | None = None, **overrides) -> Encoder:
    """Build an encoder by name. Overrides (`weights`, `pretrained`, `input_size`, `random_weights`...)
    of `None` keep the defaults; an option the encoder does not take raises `EncoderOptionError` naming the
    valid ones; missing weights raise `WeightsUnavailable` naming what was looked for."""
    entry = _entry(name)
    return entry.build(entry.spec, device or default_device(), **_strict(name, overrides))


_LOADED = False


def _load_families() -> None:
    """Import the encoder families explicitly (no file scanning); each registers itself."""
    global _LOADED
    if _LOADED:
        return
    _LOADED = True
    from leakcore.encoders import hashes, onnx_copy, torch_models  # noqa: F401


__all__ = [
    "Encoder", "EncoderOptionError", "EncoderSpec", "WeightsUnavailable", "create_encoder", "encoder_names",
    "encoder_options", "get_spec",
    "l2_normalise", "list_encoders", "register_encoder", "default_device",
]
