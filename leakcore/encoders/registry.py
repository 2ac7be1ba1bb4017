"""The encoder registry itself: families register into it; `leakcore.encoders` reads it (imports point one way)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from leakcore.encoders.base import Encoder, EncoderSpec


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
