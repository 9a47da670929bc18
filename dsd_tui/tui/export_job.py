"""The export, run as `python -m dsd_tui.tui.export_job MODEL OUT_DIR STEPS… [--sampler S]` so torch loads in a
child process, not in the app: one ONNX sampler per step count, one JSON line per export (or an `error:` line),
also kept beside the ONNX file (`NAME.json`) so the app can list earlier exports with their parity.

`--sampler` (one of `dsd_core.solvers_plan.SAMPLERS`, DDIM by default) picks the solver the graph unrolls; a DDIM
export keeps the name it had before there were other solvers (`M-8steps.onnx`), another solver's name says it
(`M-8steps-unipc.onnx`).
"""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path

from dsd_core.solvers_plan import DEFAULT_SAMPLER


def onnx_path(out_dir: Path, model: Path, steps: int, sampler: str = DEFAULT_SAMPLER) -> Path:
    tail = "" if sampler == DEFAULT_SAMPLER else f"-{sampler}"
    return Path(out_dir) / f"{Path(model).stem}-{steps}steps{tail}.onnx"


def _fresh(report_path: Path, model: Path) -> dict | None:
    """The export report at `report_path` if it is of `model` and its ONNX file is newer than the model file."""
    try:
        report = json.loads(report_path.read_text())
        fresh = Path(report["path"]).stat().st_mtime >= Path(model).stat().st_mtime
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return report if fresh and report.get("source") == str(model) else None


def earlier_exports(out_dir: Path, model: Path) -> list[dict]:
    """Reports of this model's DDIM exports that are newer than the model file."""
    out = []
    for path in sorted(Path(out_dir).glob(f"{Path(model).stem}-*steps.json")):
        report = _fresh(path, model)
        if report is not None and report.get("sampler", DEFAULT_SAMPLER) == DEFAULT_SAMPLER:
            out.append(report)
    return sorted(out, key=lambda r: r["steps"])


def fresh_export(out_dir: Path, model: Path, steps: int, sampler: str) -> Path | None:
    """The ONNX file of an earlier export of `model` at `steps` with `sampler`, if it is still current."""
    report = _fresh(onnx_path(out_dir, model, steps, sampler).with_suffix(".json"), model)
    if report is None or int(report.get("steps", -1)) != steps or report.get("sampler", DEFAULT_SAMPLER) != sampler:
        return None
    return Path(report["path"])


def export_source(onnx_file: Path) -> Path | None:
    """The model an ONNX file was exported from, as its report beside it says (None without one)."""
    try:
        source = Path(json.loads(Path(onnx_file).with_suffix(".json").read_text())["source"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return source if source.is_file() else None


async def export_reports(stdout, lines: list[str]) -> AsyncIterator[dict]:
    """The export subprocess's output: every line kept in `lines` (its error, should it fail), and each JSON
    report of a written file (one with a "path") yielded as it comes."""
    async for raw in stdout:
        line = raw.decode(errors="replace").rstrip()
        lines.append(line)
        try:
            report = json.loads(line)
        except ValueError:
            continue
        if isinstance(report, dict) and "path" in report:
            yield report


def export_argv(model: Path, out_dir: Path, steps: list[int], sampler: str = DEFAULT_SAMPLER) -> list[str]:
    tail = [] if sampler == DEFAULT_SAMPLER else ["--sampler", sampler]
    return [sys.executable, "-m", "dsd_tui.tui.export_job", str(model), str(out_dir), *map(str, steps), *tail]


def parse_argv(argv: list[str]) -> tuple[Path, Path, list[int], str]:
    """MODEL OUT_DIR STEPS… [--sampler S] → (model, out_dir, steps, sampler)."""
    argv, sampler = list(argv), DEFAULT_SAMPLER
    if "--sampler" in argv:
        at = argv.index("--sampler")
        sampler = argv[at + 1] if at + 1 < len(argv) else ""
        del argv[at : at + 2]
    return Path(argv[0]), Path(argv[1]), [int(s) for s in argv[2:]], sampler


def main(argv: list[str]) -> int:
    import torch

    from dsd_core.checkpoint import file_sha256, load_model
    from dsd_core.errors import DsdError
    from dsd_core.solvers_plan import check_sampler
    from exporters.onnx_export import export_onnx

    torch.set_num_threads(1)
    model, out_dir, steps, sampler = parse_argv(argv)
    try:
        sampler = check_sampler(sampler)
        out_dir.mkdir(parents=True, exist_ok=True)
        loaded, sha = load_model(model), file_sha256(model)
        for n in steps:
            report = export_onnx(loaded, onnx_path(out_dir, model, n, sampler), steps=n, source_sha256=sha,
                                 sampler=sampler)
            line = json.dumps({"path": str(report.path), "steps": report.steps, "sampler": sampler,
                               "max_abs_diff": report.max_abs_diff, "seconds": round(report.seconds, 2),
                               "opset": report.opset, "source": str(model),
                               "distilled_steps": loaded.distilled_steps})
            report.path.with_suffix(".json").write_text(line + "\n")
            print(line, flush=True)
    except DsdError as exc:
        from .setup_form import app_text

        print(f"error: {app_text(exc)}", flush=True)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
