"""The paper's encoders: open_clip ViT-B/32, DINOv2 ViT-B/14 (timm) and ResNet-152 (torchvision)."""
from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from leakcore.encoders.registry import register_encoder
from leakcore.errors import EncoderOptionError
from leakcore.encoders.base import (
    CLIP_MEAN, CLIP_STD, IMAGENET_MEAN, IMAGENET_STD, Encoder, EncoderSpec, WeightsUnavailable, file_fingerprint,
)

log = logging.getLogger(__name__)

_UNCALIBRATED = (
    "none: nobody has calibrated this encoder (no trained weights load on our development machines), and another "
    "encoder's numbers do not transfer; calibrate it on your data first"
)


class TorchEncoder(Encoder):
    """A torch module mapping normalised NCHW floats to features; half precision on CUDA."""

    resample = "bicubic"  # as `prepare`

    def __init__(self, spec: EncoderSpec, device: str, module, weights_id: str):
        super().__init__(spec, device, weights_id=weights_id)
        import torch

        self._dtype = torch.float16 if device.startswith("cuda") else torch.float32
        self.module = module.eval().to(device=device, dtype=self._dtype)
        self._mean = torch.tensor(spec.mean, device=device, dtype=self._dtype).view(1, 3, 1, 1)
        self._std = torch.tensor(spec.std, device=device, dtype=self._dtype).view(1, 3, 1, 1)

    def prepare(self, image):
        from PIL import Image

        size = self.spec.input_size
        return np.asarray(image.resize((size, size), Image.Resampling.BICUBIC), dtype=np.uint8)

    def embed_batch(self, batch: np.ndarray) -> np.ndarray:
        import torch

        x = batch if torch.is_tensor(batch) else torch.from_numpy(batch)  # a tensor: decoded on the GPU already
        x = x.to(self.device, non_blocking=True).permute(0, 3, 1, 2).to(self._dtype).div_(255)
        with torch.inference_mode():
            return self.module((x - self._mean) / self._std).float().cpu().numpy()


def _random_weights_warning(name: str) -> str:
    log.warning("%s built with RANDOM weights: its vectors mean nothing; for tests only", name)
    return "random-weights"


# ---- open_clip ViT-B/32 -------------------------------------------------------------------------
# Hugging Face repos of the common tags (from open_clip's pretrained table), so that checking for
# weights does not import torch.
_CLIP_REPOS = {"openai": "timm/vit_base_patch32_clip_224.openai", "laion2b_s34b_b79k": "laion/CLIP-ViT-B-32-laion2B-s34B-b79K"}

def _clip_weights(pretrained: str | None, weights: str | None) -> tuple[str, str]:
    """(what to pass open_clip as `pretrained`, fingerprint) or WeightsUnavailable."""
    if weights:
        path = Path(weights).expanduser()
        if not path.exists():
            raise WeightsUnavailable(f"CLIP checkpoint {path} does not exist")
        return str(path), file_fingerprint(path)
    tag = pretrained or "openai"
    repo = _CLIP_REPOS.get(tag)
    if repo is None:  # other tags: ask open_clip (imports torch, so only when needed)
        from open_clip import pretrained as pt

        cfg = pt.get_pretrained_cfg("ViT-B-32", tag)
        if not cfg:
            valid = ", ".join(pt.list_pretrained_tags_by_model("ViT-B-32"))
            raise WeightsUnavailable(f"unknown open_clip tag {tag!r} for ViT-B-32; valid tags: {valid}")
        repo = (cfg.get("hf_hub") or "").rstrip("/")
    if repo:
        from huggingface_hub import try_to_load_from_cache

        for filename in ("open_clip_model.safetensors", "open_clip_pytorch_model.bin"):
            hit = try_to_load_from_cache(repo, filename)
            if isinstance(hit, str) and os.path.exists(hit):
                return hit, file_fingerprint(hit)
    raise WeightsUnavailable(
        f"open_clip ViT-B-32 weights for tag {tag!r} are not in the local cache (looked for Hugging Face repo "
        f"{repo or '?'}); download them once on a machine that is online (python -c \"import open_clip; "
        f"open_clip.create_model('ViT-B-32', pretrained='{tag}')\") or pass weights=PATH to a checkpoint"
    )


def _check_clip(pretrained: str | None = None, weights: str | None = None, random_weights: bool = False):
    if random_weights:
        return None
    try:
        _clip_weights(pretrained, weights)
    except WeightsUnavailable as exc:
        return str(exc)
    return None


_CLIP = EncoderSpec(
    name="clip-vit-b32", family="open_clip", dim=512, input_size=224,
    weights="open_clip pretrained tag (openai, laion2b_s34b_b79k) from the local cache, or weights=PATH",
    hard_threshold=0.98, soft_threshold=0.95,
    thresholds_from="the paper (arXiv 2508.17416): ROC curves on transformed Flickr30k queries, CLIP ViT-B/32",
    mean=CLIP_MEAN, std=CLIP_STD, description="open_clip ViT-B-32 image tower, the paper's encoder",
)


@register_encoder(_CLIP, check=_check_clip)
def _build_clip(spec, device, pretrained=None, weights=None, random_weights=False, input_size=None):
    import open_clip

    if input_size not in (None, spec.input_size):
        raise EncoderOptionError(f"clip-vit-b32 takes {spec.input_size} px input only (its position table is fixed), got {input_size}")

    if random_weights:
        model = open_clip.create_model("ViT-B-32", pretrained=None)
        wid = _random_weights_warning(spec.name)
    else:
        source, wid = _clip_weights(pretrained, weights)
        model = open_clip.create_model("ViT-B-32", pretrained=source)
    return TorchEncoder(spec.replace(input_size=input_size), device, model.visual, wid)


# ---- timm DINOv2 ViT-B/14 and torchvision ResNet-152 ---------------------------------------------
def _local_file(weights: str | None, what: str, how: str) -> Path:
    if not weights:
        raise WeightsUnavailable(f"{what}: no weights file given; {how}")
    path = Path(weights).expanduser()
    if not path.exists():
        raise WeightsUnavailable(f"{what}: weights file {path} does not exist; {how}")
    return path


def _torchvision_cached(filename_prefix: str) -> Path | None:
    # torch.hub.get_dir()'s rule, without importing torch: $TORCH_HOME/hub, else $XDG_CACHE_HOME/torch/hub.
    torch_home = os.environ.get("TORCH_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME", "~/.cache"), "torch")
    hub = Path(torch_home).expanduser() / "hub" / "checkpoints"
    found = sorted(hub.glob(f"{filename_prefix}*.pth")) if hub.exists() else []
    return found[0] if found else None


def _timm_cached(model_name: str) -> Path | None:
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    hit = try_to_load_from_cache(f"timm/{model_name}", "model.safetensors")
    return Path(hit) if isinstance(hit, str) and os.path.exists(hit) else None


def _resolve_local(weights, cached, what, how) -> Path:
    if weights:
        return _local_file(weights, what, how)
    if cached is not None:
        return cached
    raise WeightsUnavailable(f"{what}: weights not found in the library cache; {how}")


_DINO_HOW = "pass weights=PATH (timm vit_base_patch14_dinov2.lvd142m safetensors) or populate the timm cache"
_RESNET_HOW = "pass weights=PATH (torchvision resnet152 .pth) or populate the torch hub cache"


def _local_check(cached, what: str, how: str):
    """An availability check for weights given as a file or found in a library cache."""

    def check(weights=None, random_weights=False):
        if random_weights:
            return None
        try:
            _resolve_local(weights, cached(), what, how)
        except WeightsUnavailable as exc:
            return str(exc)
        return None

    return check


_dino_check = _local_check(lambda: _timm_cached("vit_base_patch14_dinov2.lvd142m"), "dinov2-vitb14", _DINO_HOW)
_resnet_check = _local_check(lambda: _torchvision_cached("resnet152-"), "resnet152", _RESNET_HOW)


_DINO = EncoderSpec(
    name="dinov2-vitb14", family="timm", dim=768, input_size=224, weights=_DINO_HOW,
    hard_threshold=None, soft_threshold=None, thresholds_from=_UNCALIBRATED,
    mean=IMAGENET_MEAN, std=IMAGENET_STD, description="DINOv2 ViT-B/14 CLS token (timm), a comparison encoder",
)
_RESNET = EncoderSpec(
    name="resnet152", family="torchvision", dim=2048, input_size=224, weights=_RESNET_HOW,
    hard_threshold=None, soft_threshold=None, thresholds_from=_UNCALIBRATED,
    mean=IMAGENET_MEAN, std=IMAGENET_STD, description="ResNet-152 penultimate layer (torchvision)",
)


@register_encoder(_DINO, check=_dino_check)
def _build_dino(spec, device, weights=None, random_weights=False, input_size=None):
    import timm

    spec = spec.replace(input_size=input_size)
    if random_weights:
        model = timm.create_model("vit_base_patch14_dinov2", pretrained=False, num_classes=0, img_size=spec.input_size)
        wid = _random_weights_warning(spec.name)
    else:
        path = _resolve_local(weights, _timm_cached("vit_base_patch14_dinov2.lvd142m"), spec.name, _DINO_HOW)
        # timm's own pretrained loader: it resamples the position table to the input size, then loads strictly,
        # so a checkpoint of another model fails loudly instead of leaving random layers behind
        try:
            model = timm.create_model("vit_base_patch14_dinov2.lvd142m", pretrained=True, num_classes=0,
                                      img_size=spec.input_size, pretrained_cfg_overlay={"file": str(path)})
        except RuntimeError as exc:
            raise WeightsUnavailable(f"{spec.name}: {path} is not a DINOv2 ViT-B/14 checkpoint ({str(exc).splitlines()[0]})") from exc
        wid = file_fingerprint(path)
    return TorchEncoder(spec, device, model, wid)


@register_encoder(_RESNET, check=_resnet_check)
def _build_resnet(spec, device, weights=None, random_weights=False, input_size=None):
    import torch
    import torchvision

    model = torchvision.models.resnet152(weights=None)
    if random_weights:
        wid = _random_weights_warning(spec.name)
    else:
        path = _resolve_local(weights, _torchvision_cached("resnet152-"), spec.name, _RESNET_HOW)
        try:
            model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))  # strict by default
        except RuntimeError as exc:
            raise WeightsUnavailable(f"{spec.name}: {path} is not a ResNet-152 checkpoint ({str(exc).splitlines()[0]})") from exc
        wid = file_fingerprint(path)
    model.fc = torch.nn.Identity()
    return TorchEncoder(spec.replace(input_size=input_size), device, model, wid)
