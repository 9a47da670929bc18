"""exporters: the few-step model as ONNX (`export_onnx`, needs torch) and sampling it with onnxruntime
(`OnnxSampler`, needs only numpy and onnxruntime).

Names are resolved lazily so that `import exporters` (and the runtime) never imports torch.
"""

from __future__ import annotations

from importlib import import_module

_WHERE = {"export_onnx": "onnx_export", "ExportReport": "onnx_export", "OnnxSampler": "runtime"}

__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name in _WHERE:
        return getattr(import_module(f"{__name__}.{_WHERE[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
