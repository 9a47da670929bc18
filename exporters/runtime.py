"""`OnnxSampler`: run an exported dsd sampler with onnxruntime — numpy and onnxruntime only, no torch.

The noise is `dsd_core.noise.initial_noise` (numpy's PCG64), the function the torch sampler uses, so the
same seed gives the same images on either path (within the exporter's 1e-4 parity).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from dsd_core.checks import check_guidance_scale, check_threads
from dsd_core.errors import DsdError
from dsd_core.noise import initial_noise
from dsd_core.solvers_plan import SAMPLERS

from . import metadata as md

CPU, CUDA = "CPUExecutionProvider", "CUDAExecutionProvider"
PROVIDERS = ("auto", "cpu", "cuda")


ORT_HINT = "pip install 'dsd-distill[cpu]' (onnxruntime), or [gpu] for CUDA (onnxruntime-gpu)"


def require_onnxruntime(why: str = "sampling an .onnx model"):
    """onnxruntime, or a one-line error naming the extra that installs it (it is optional: see pyproject)."""
    try:
        import onnxruntime
    except ImportError:
        raise DsdError(f"{why} needs onnxruntime: {ORT_HINT}") from None
    return onnxruntime


def preload_cuda(ort) -> None:
    """Load the CUDA and cuDNN libraries that torch's CUDA wheels installed (the `nvidia` pip packages), so
    onnxruntime's CUDA provider finds them without LD_LIBRARY_PATH. Nothing happens where they are absent."""
    import importlib.util

    if getattr(ort, "_dsd_preloaded", False) or not hasattr(ort, "preload_dlls"):
        return
    if importlib.util.find_spec("nvidia") is None:
        return
    try:
        ort.preload_dlls()
    except Exception:  # noqa: BLE001 - a failed preload only means the CUDA provider may not load
        pass
    ort._dsd_preloaded = True


def session_options(ort, threads: int | None):
    """Intra-op spinning off (faster batch-1 sampling, and it frees the cores between runs: docs/benchmarks.md,
    "Engine costs"); `threads` intra-op threads (None: onnxruntime's choice)."""
    check_threads(threads)
    options = ort.SessionOptions()
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.inter_op_num_threads = 1
    if threads is not None:
        options.intra_op_num_threads = threads
    return options


def open_session(path: str | Path, threads: int | None = None, provider: str = "auto", batch: int | None = None):
    """An InferenceSession on CUDA when asked ("auto"/"cuda") and it really loads, else on the CPU.

    onnxruntime-gpu lists CUDA as available on machines where it cannot load and then logs an error and a
    warning while falling back; those are silenced here, and the caller reads `get_providers()` for the
    provider actually in use. `batch` fixes the file's symbolic batch axis for this session: with it
    symbolic, setting up the unrolled graph takes several times longer, growing ~quadratically with the steps
    (docs/benchmarks.md, "Engine costs").
    """
    if provider not in PROVIDERS:
        raise DsdError(f"unknown provider {provider!r}; choose one of {', '.join(PROVIDERS)}")
    ort = require_onnxruntime()
    path = Path(path)
    if not path.is_file():
        raise DsdError(f"ONNX model not found: {path}")
    options = session_options(ort, threads)
    if batch is not None:
        options.add_free_dimension_override_by_name(md.BATCH, batch)
    wanted = [CUDA, CPU] if provider != "cpu" and CUDA in ort.get_available_providers() else [CPU]
    if wanted[0] == CUDA:
        preload_cuda(ort)
    ort.set_default_logger_severity(4)  # the CUDA-load error/warning pair on CPU machines
    try:
        return ort.InferenceSession(str(path), options, providers=wanted)
    except Exception as exc:  # onnxruntime raises InvalidProtobuf, Fail, InvalidGraph, …
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DsdError(f"{path} is not a readable ONNX model: {first}") from None
    finally:
        ort.set_default_logger_severity(2)  # onnxruntime's default: warnings and up


class OnnxSampler:
    """An exported dsd sampler: `sample(num, seed)` → float32 (N, C, H, W) images in [0, 1].

    One onnxruntime session per batch size (see `open_session`); a last, partial batch is padded with extra
    noise rather than given a session of its own.
    """

    def __init__(self, path: str | Path, threads: int | None = None, provider: str = "auto", batch: int = 1):
        """`batch`: the batch size of the first session, the one that reads the metadata; pass the batch the
        caller will sample with, so that no second session has to be set up for it."""
        self.path, self.threads = Path(path), threads
        if batch < 1:
            raise DsdError(f"the batch size must be at least 1, got {batch}")
        first = open_session(self.path, threads, provider, batch=batch)
        self.metadata = md.read_meta(first.get_modelmeta().custom_metadata_map, str(self.path))
        if self.metadata["kind"] != "sampler":
            raise DsdError(f"{self.path} is the denoiser alone (exported with --step-model); "
                           "sampling needs the sampler export (dsd export --onnx without --step-model)")
        names = [i.name for i in first.get_inputs()]
        if names != self.metadata["inputs"]:
            raise DsdError(f"{self.path}: graph inputs {names} do not match its dsd metadata")
        self.provider: str = first.get_providers()[0]
        self._sessions = {batch: first}
        try:  # metadata is data: anything but plain numbers is refused, never interpreted
            self.steps: int = int(self.metadata["steps"])
            self.image_shape: tuple[int, ...] = tuple(int(n) for n in self.metadata["image_shape"])
            self.num_classes: int = int(self.metadata["num_classes"])
            # files from before --sampler walk DDIM; an unknown name is refused like any bad metadata
            self.sampler: str = str(self.metadata.get("sampler") or "ddim")
            if self.sampler not in SAMPLERS:
                raise ValueError("unknown sampler")
            if self.steps < 1 or len(self.image_shape) != 3 or min(self.image_shape) < 1 or self.num_classes < 0:
                raise ValueError("out of range")
        except (KeyError, TypeError, ValueError) as exc:
            raise DsdError(f"{self.path} has invalid dsd metadata ({type(exc).__name__})") from None
        self.takes_guidance = md.GUIDANCE in names
        # the scale the model was distilled with, else plain conditional sampling
        self.default_guidance: float = float(self.metadata.get("guidance") or 1.0)

    def session(self, batch: int):
        """The session for one batch size, on the provider the first one got."""
        if batch not in self._sessions:
            provider = "cpu" if self.provider == CPU else "cuda"
            self._sessions[batch] = open_session(self.path, self.threads, provider, batch)
        return self._sessions[batch]

    def _labels(self, class_labels: int | Sequence[int] | np.ndarray | None, num: int) -> np.ndarray | None:
        """int64 labels for a conditional model; None draws unconditionally (the null class)."""
        if not self.num_classes:
            if class_labels is not None:
                raise DsdError(f"{self.path} is an unconditional model; it takes no class labels")
            return None
        if class_labels is None:
            class_labels = self.num_classes  # the null class id
        labels = np.broadcast_to(np.asarray(class_labels, dtype=np.int64), (num,)) if np.ndim(class_labels) == 0 \
            else np.asarray(class_labels, dtype=np.int64)
        if labels.shape != (num,):
            raise DsdError(f"got {labels.size} class labels for {num} images")
        if labels.min() < 0 or labels.max() > self.num_classes:
            raise DsdError(f"class labels must lie in [0, {self.num_classes}] ({self.num_classes} = unconditional)")
        return np.ascontiguousarray(labels)

    def sample(
        self,
        num: int,
        seed: int = 0,
        class_labels: int | Sequence[int] | np.ndarray | None = None,
        batch: int = 256,
        on_batch: Callable[[int], None] | None = None,
        guidance: float | None = None,
    ) -> np.ndarray:
        """`num` images; all noise is drawn up front, so `batch` never changes the images. `guidance`: w of
        classifier-free guidance for a conditional model (default: the scale it was distilled with, else 1)."""
        if num < 1 or batch < 1:
            raise DsdError(f"need at least one image and a batch of at least one, got num={num}, batch={batch}")
        if guidance is not None and not self.takes_guidance:
            raise DsdError(f"{self.path} takes no guidance (an unconditional model, or exported before guidance)")
        check_guidance_scale(guidance)
        noise = initial_noise(seed, num, self.image_shape)
        labels = self._labels(class_labels, num)
        batch = min(batch, num)
        scale = np.full(batch, self.default_guidance if guidance is None else guidance, dtype=np.float32)
        session, out = self.session(batch), []
        for start in range(0, num, batch):
            n = min(batch, num - start)
            feed = {md.NOISE: _padded(noise[start : start + n], batch)}
            if labels is not None:
                feed[md.CLASS] = _padded(labels[start : start + n], batch)
            if self.takes_guidance:
                feed[md.GUIDANCE] = scale
            out.append(session.run([md.IMAGES], feed)[0][:n])
            if on_batch is not None:
                on_batch(n)
        return np.concatenate(out)


def _padded(array: np.ndarray, rows: int) -> np.ndarray:
    """`array` with copies of its first row appended up to `rows` rows (the batch a session was made for)."""
    if len(array) == rows:
        return array
    return np.concatenate([array, np.repeat(array[:1], rows - len(array), axis=0)])
