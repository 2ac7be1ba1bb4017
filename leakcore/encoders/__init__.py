"""Encoder registry: `register_encoder`, `create_encoder`, `list_encoders`, `get_spec` (timm/open_clip habit)."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable

from leakcore.encoders.base import Encoder, EncoderSpec, WeightsUnavailable, l2_normalise

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Entry:
    spec: EncoderSpec
    build: Callable[..., Encoder]
    check: Callable[..., str | None]  # None when it can run here, else why not


_REGISTRY: dict[str, _Entry] = {}


def register_encoder(spec: EncoderSpec, check: Callable[..., str | None]):
    """Decorator registering a builder `build(spec, device, **overrides) -> Encoder` under `spec.name`."""

    def wrap(build):
        if spec.name in _REGISTRY:
            raise ValueError(f"encoder {spec.name!r} is registered twice")
        _REGISTRY[spec.name] = _Entry(spec, build, check)
        return build

    return wrap


def _entry(name: str) -> _Entry:
    _load_families()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown encoder {name!r}; valid encoders: {', '.join(sorted(_REGISTRY))}") from None


def get_spec(name: str) -> EncoderSpec:
    """The registered spec (dimension, input size, weights, default thresholds) of an encoder."""
    return _entry(name).spec


def encoder_names() -> list[str]:
    _load_families()
    return sorted(_REGISTRY)


def list_encoders(**overrides) -> list[dict]:
    """Every encoder with whether it can run here now, and why not."""
    rows = []
    for name in encoder_names():
        entry = _REGISTRY[name]
        why_not = entry.check(**{k: v for k, v in overrides.items() if v is not None})
        rows.append({
            "name": name, "family": entry.spec.family, "dim": entry.spec.dim,
            "input_size": entry.spec.input_size, "available": why_not is None, "why_not": why_not or "",
            "weights": entry.spec.weights, "hard": entry.spec.hard_threshold, "soft": entry.spec.soft_threshold,
            "thresholds_from": entry.spec.thresholds_from,
        })
    return rows


def default_device() -> str:
    """cuda when torch sees a GPU, else cpu."""
    try:
        import torch
    except ImportError:
        return "cpu"
    return "cuda" if torch.cuda.is_available() else "cpu"


def create_encoder(name: str, device: str | None = None, **overrides) -> Encoder:
    """Build an encoder by name. Overrides (`weights`, `pretrained`, `input_size`, `random_weights`...)
    of `None` keep the defaults; missing weights raise `WeightsUnavailable` naming what was looked for."""
    entry = _entry(name)
    overrides = {k: v for k, v in overrides.items() if v is not None}
    return entry.build(entry.spec, device or default_device(), **overrides)


_LOADED = False


def _load_families() -> None:
    """Import the encoder families explicitly (no file scanning); each registers itself."""
    global _LOADED
    if _LOADED:
        return
    _LOADED = True
    from leakcore.encoders import hashes, onnx_copy, torch_models  # noqa: F401


__all__ = [
    "Encoder", "EncoderSpec", "WeightsUnavailable", "create_encoder", "encoder_names", "get_spec",
    "l2_normalise", "list_encoders", "register_encoder", "default_device",
]
