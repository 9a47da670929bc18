"""`OnnxSampler`: run an exported dsd sampler with onnxruntime — numpy and onnxruntime only, no torch.

The noise is `dsd_core.noise.NoiseStream` (numpy's PCG64), the stream the torch sampler draws, so the same
seed gives the same images on either path (within the exporter's 1e-4 parity). A file is data: its metadata's
sizes are held to `dsd_core/limits.py` before anything is allocated, its graph's declared inputs and outputs
must agree with them, and every batch it returns is checked (shape, finite, within its output range) before it is used.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np

from dsd_core.checks import check_guidance_scale, check_threads
from dsd_core.errors import DsdError
from dsd_core.limits import MAX_CHANNELS, MAX_CLASSES, MAX_IMAGE_SIDE, MAX_TIMESTEPS, check_batch, size_in_file
from dsd_core.noise import NoiseStream
from dsd_core.solvers_plan import SAMPLERS

from . import metadata as md

CPU, CUDA = "CPUExecutionProvider", "CUDAExecutionProvider"
PROVIDERS = ("auto", "cpu", "cuda")


OUTPUT_SLACK = 1e-3  # how far outside its output range a sampler's output may stray (float error) before it is refused
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
            # names `--class` may use: one short string per class, or none
            labels = self.metadata.get("class_names") or None
            if labels is not None and (not isinstance(labels, list) or len(labels) != self.num_classes
                                       or not all(map(plain_name, labels))):
                raise ValueError("bad class names")
            self.class_names: tuple[str, ...] | None = None if labels is None else tuple(labels)
            # files from before --sampler walk DDIM; an unknown name is refused like any bad metadata
            self.sampler: str = str(self.metadata.get("sampler") or "ddim")
            if self.sampler not in SAMPLERS:
                raise ValueError("unknown sampler")
            # the scale the model was distilled with, else plain conditional sampling
            self.default_guidance: float = float(self.metadata.get("guidance") or 1.0)
            # the values its images lie in ([0, 1] for every dsd export); files without it are not range-checked
            low, high = (float(v) for v in self.metadata.get("output_range") or (-math.inf, math.inf))
            self.output_range: tuple[float, float] = (low, high)
            if self.steps < 1 or len(self.image_shape) != 3 or min(self.image_shape) < 1 or self.num_classes < 0 \
                    or not 0 <= self.default_guidance < float("inf"):
                raise ValueError("out of range")
        except (KeyError, TypeError, ValueError, OverflowError) as exc:
            raise DsdError(f"{self.path} has invalid dsd metadata ({type(exc).__name__})") from None
        for what, value, limit in (("steps", self.steps, MAX_TIMESTEPS),
                                   ("channels", self.image_shape[0], MAX_CHANNELS),
                                   ("image height", self.image_shape[1], MAX_IMAGE_SIDE),
                                   ("image width", self.image_shape[2], MAX_IMAGE_SIDE),
                                   ("num_classes", self.num_classes, MAX_CLASSES)):
            size_in_file(self.path, f"the metadata's {what}", value, limit, low=0 if what == "num_classes" else 1)
        self._check_declared(first)
        self.takes_guidance = md.GUIDANCE in names

    def _check_declared(self, session) -> None:
        """The graph's declared noise input and images output agree with the metadata's image shape (a symbolic
        axis agrees with anything): a file whose graph and metadata disagree is refused before it runs."""
        declared = {i.name: i.shape for i in session.get_inputs()} | {o.name: o.shape for o in session.get_outputs()}
        for name in (md.NOISE, md.IMAGES):
            shape = declared.get(name)
            if shape is None:
                raise DsdError(f"{self.path}: the graph has no {name!r} {'output' if name == md.IMAGES else 'input'}; "
                               "not a dsd sampler export")
            fixed = [(d, m) for d, m in zip(shape[1:], self.image_shape) if isinstance(d, int)]
            if len(shape) != 4 or any(d != m for d, m in fixed):
                raise DsdError(f"{self.path}: its graph's {name} is {_dims(shape)} but its metadata says images of "
                               f"{list(self.image_shape)}; a broken or altered export: export it again")

    def session(self, batch: int):
        """The session for one batch size, on the provider the first one got."""
        if batch not in self._sessions:
            provider = "cpu" if self.provider == CPU else "cuda"
            self._sessions[batch] = open_session(self.path, self.threads, provider, batch)
        return self._sessions[batch]

    def _run(self, session, feed: dict, n: int, first: int, seed: int) -> np.ndarray:
        """One batch through the graph, checked: the images the metadata promises (shape, finite, within its
        `output_range`), or a one-line error and nothing written."""
        try:
            images = session.run([md.IMAGES], feed)[0]
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own types (Fail, InvalidArgument, …)
            first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise DsdError(f"{self.path}: onnxruntime could not run the sampler: {first_line}") from None
        expected = (len(feed[md.NOISE]), *self.image_shape)
        if not isinstance(images, np.ndarray) or images.shape != expected:
            got = getattr(images, "shape", type(images).__name__)
            raise DsdError(f"{self.path}: the graph returned images of shape {got}, not the {expected} its "
                           "metadata promises; nothing written")
        images = images[:n]
        if not np.isfinite(images).all():
            raise DsdError(f"{self.path}: the graph returned non-finite values (NaN or inf) for images "
                           f"{first}…{first + n - 1} of seed {seed}; nothing written")
        low, high = self.output_range
        if images.min() < low - OUTPUT_SLACK or images.max() > high + OUTPUT_SLACK:
            raise DsdError(f"{self.path}: the graph returned values in [{images.min():.3g}, {images.max():.3g}], "
                           f"outside the [{low:g}, {high:g}] its metadata promises; nothing written")
        return images.astype(np.float32, copy=False)

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
        """`num` images; image i gets the i-th noise of the seed's stream, so `batch` never changes the images.
        `guidance`: w of classifier-free guidance for a conditional model (default: the scale it was distilled
        with, else 1). Holds all `num` images: writers of many images use `batches`."""
        out = []
        for images in self.batches(num, seed, class_labels, batch, guidance):
            out.append(images)
            if on_batch is not None:
                on_batch(len(images))
        return np.concatenate(out)

    def batches(
        self,
        num: int,
        seed: int = 0,
        class_labels: int | Sequence[int] | np.ndarray | None = None,
        batch: int = 256,
        guidance: float | None = None,
    ) -> Iterator[np.ndarray]:
        """`sample`'s images one checked batch at a time, each batch's noise drawn when it runs: memory grows
        with `batch`, never with `num`."""
        if num < 1 or batch < 1:
            raise DsdError(f"need at least one image and a batch of at least one, got num={num}, batch={batch}")
        if guidance is not None and not self.takes_guidance:
            raise DsdError(f"{self.path} takes no guidance (an unconditional model, or exported before guidance)")
        check_guidance_scale(guidance)
        batch = min(batch, num)
        check_batch(batch, int(np.prod(self.image_shape)))
        labels = self._labels(class_labels, num)
        noise = NoiseStream(seed, self.image_shape)
        scale = np.full(batch, self.default_guidance if guidance is None else guidance, dtype=np.float32)
        session = self.session(batch)
        for start in range(0, num, batch):
            n = min(batch, num - start)
            feed = {md.NOISE: _padded(noise.draw(n), batch)}
            if labels is not None:
                feed[md.CLASS] = _padded(labels[start : start + n], batch)
            if self.takes_guidance:
                feed[md.GUIDANCE] = scale
            yield self._run(session, feed, n, start, seed)


def _dims(shape) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


def _padded(array: np.ndarray, rows: int) -> np.ndarray:
    """`array` with copies of its first row appended up to `rows` rows (the batch a session was made for)."""
    if len(array) == rows:
        return array
    return np.concatenate([array, np.repeat(array[:1], rows - len(array), axis=0)])


def plain_name(name: object) -> bool:
    """A class name the metadata may give: a short printable string without markup (the app shows it)."""
    return isinstance(name, str) and 0 < len(name) <= 64 and name.isprintable() and "[" not in name
