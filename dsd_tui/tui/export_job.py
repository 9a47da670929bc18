"""The export, run as `python -m dsd_tui.tui.export_job MODEL OUT_DIR STEPS…` so torch loads in a child
process, not in the app: one ONNX sampler per step count, one JSON line per export (or an `error:` line),
also kept beside the ONNX file (`NAME.json`) so the app can list earlier exports with their parity.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def onnx_path(out_dir: Path, model: Path, steps: int) -> Path:
    return Path(out_dir) / f"{Path(model).stem}-{steps}steps.onnx"


def earlier_exports(out_dir: Path, model: Path) -> list[dict]:
    """Reports of this model's exports that are newer than the model file."""
    out = []
    for path in sorted(Path(out_dir).glob(f"{Path(model).stem}-*steps.json")):
        try:
            report = json.loads(path.read_text())
            fresh = Path(report["path"]).stat().st_mtime >= Path(model).stat().st_mtime
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if fresh and report.get("source") == str(model):
            out.append(report)
    return sorted(out, key=lambda r: r["steps"])


def export_argv(model: Path, out_dir: Path, steps: list[int]) -> list[str]:
    return [sys.executable, "-m", "dsd_tui.tui.export_job", str(model), str(out_dir), *map(str, steps)]


def main(argv: list[str]) -> int:
    import torch

    from dsd_core.checkpoint import file_sha256, load_model
    from dsd_core.errors import DsdError
    from exporters.onnx_export import export_onnx

    torch.set_num_threads(1)
    model, out_dir, steps = Path(argv[0]), Path(argv[1]), [int(s) for s in argv[2:]]
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        loaded, sha = load_model(model), file_sha256(model)
        for n in steps:
            report = export_onnx(loaded, onnx_path(out_dir, model, n), steps=n, source_sha256=sha)
            line = json.dumps({"path": str(report.path), "steps": report.steps, "max_abs_diff": report.max_abs_diff,
                               "seconds": round(report.seconds, 2), "opset": report.opset, "source": str(model)})
            report.path.with_suffix(".json").write_text(line + "\n")
            print(line, flush=True)
    except DsdError as exc:
        from .setup_form import app_text

        print(f"error: {app_text(exc)}", flush=True)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
