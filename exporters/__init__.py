"""exporters: the few-step model as ONNX, and sampling it with onnxruntime without torch (next issue)."""
