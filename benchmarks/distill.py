"""Distillations of the default model: quality at 8/4/2 steps against their cost, into docs/benchmarks.md.

    python benchmarks/distill.py --table schedulers|methods [--base digits|CKPT] [--updates 3000] [--num 1000]
                                 [--only NAME ...] [--write]

Two tables: `schedulers` compares DSD's step schedulers, `methods` compares DSD with the baselines (TSD, PD,
DSD→PD, the authors' lockstep recipe) at one budget. Each row is one line: a distillation (a `DistillConfig`)
and the step counts to score it at. A run to 2 steps with the iterative scheduler leaves snapshots for 8 and 4
steps on the way, so one run scores all three. Every run and every evaluation shares the seeds; the
undistilled model is scored beside them. Rows can run in separate processes (`--only NAME --json FILE`, one
core each) and be joined with `--from-json FILE ...`; each row then records its own process's peak RSS.
`--base` distils another model of the digits (e.g. a v-prediction one); its table goes to its own section.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import torch
from quality import write_section  # noqa: E402  (benchmarks/ is the script's folder)

from dsd_core.checkpoint import load_model
from dsd_core.distill.config import DistillConfig
from dsd_core.distill.runner import Distiller, load_base
from dsd_core.evaluate import digits_reference, evaluate
from dsd_core.features import DigitsFeatures
from dsd_core.images import to_uint8
from dsd_core.sampling import sample

START, END = "<!-- distill:start -->", "<!-- distill:end -->"


@dataclass
class Row:
    name: str
    config: dict = field(default_factory=dict)
    scores_at: tuple[int, ...] = (8, 4, 2)


SCHEDULER_ROWS = [
    Row("dsd iterative 64→2", dict(schedule="iterative", n_from=64, n_to=2)),
    Row("dsd naive →8", dict(schedule="naive", n_to=8), (8,)),
    Row("dsd gradual-linear 64→8", dict(schedule="gradual-linear", n_from=64, n_to=8), (8,)),
    Row("dsd gradual-exp 64→8", dict(schedule="gradual-exp", n_from=64, n_to=8), (8,)),
    Row("dsd iterative 64→8", dict(schedule="iterative", n_from=64, n_to=8), (8,)),
    Row("dsd iterative 64→8 lockstep, self-teacher, lr 1e-5 (authors')",
        dict(schedule="iterative", n_from=64, n_to=8, lockstep=True, ema_teacher=False, lr=1e-5), (8,)),
    Row("dsd naive →4", dict(schedule="naive", n_to=4), (4,)),
    Row("dsd naive →2", dict(schedule="naive", n_to=2), (2,)),
    Row("dsd gradual-linear 32→2", dict(schedule="gradual-linear", n_from=32, n_to=2)),
]
METHOD_ROWS = [  # one budget and grid plan for all: iterative 32 → 16 → 8 → 4 → 2
    Row("dsd (EMA teacher)", dict(method="dsd", n_from=32, n_to=2)),
    Row("dsd lockstep, self-teacher, lr 1e-5 (authors')",
        dict(method="dsd", n_from=32, n_to=2, lockstep=True, ema_teacher=False, lr=1e-5)),
    Row("tsd (frozen teacher)", dict(method="tsd", n_from=32, n_to=2)),
    Row("pd (lr 1e-4)", dict(method="pd", n_from=32, n_to=2, data="digits")),
    Row("dsd→pd (dsd 32→8, pd 8→2)", dict(method="dsd+pd", n_from=32, n_to=2, data="digits")),
]
TABLES = {"schedulers": (SCHEDULER_ROWS, START, END),
          "methods": (METHOD_ROWS, "<!-- methods:start -->", "<!-- methods:end -->")}


def score(model_path, steps: int, num: int, ref, feats) -> dict:
    return evaluate(to_uint8(sample(load_model(model_path), steps, num, seed=0, batch=250)), ref, feats)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run(rows: list[Row], updates: int, num: int, only: list[str] | None, base_model: str = "digits") -> list[dict]:
    ref, feats = digits_reference(), DigitsFeatures()
    out = [] if only and "undistilled" not in only else [{"name": "undistilled", "steps": s, "updates": 0,
                            "nfe_per_update": 0, "wall": 0.0,
                            **score(base_model, s, num, ref, feats)} for s in (8, 4, 2)]
    for row in rows:
        if only and row.name not in only and str(rows.index(row)) not in only:
            continue
        cfg = DistillConfig(**{"updates": updates, "sample_every": 10**9, "checkpoint_every": 10**9,
                               "teacher_first": "off", **row.config})  # the rows as published
        base, name, sha = load_base(base_model, torch.device("cpu"))
        with tempfile.TemporaryDirectory() as tmp:
            d = Distiller(base, cfg, tmp, torch.device("cpu"), name, sha)
            d.run_loop()
            for steps in row.scores_at:
                path = Path(tmp) / ("model.safetensors" if steps == cfg.n_to else f"model-{steps}steps.safetensors")
                r = score(path, steps, num, ref, feats)
                out.append({"name": row.name, "steps": steps, "updates": updates,
                            "nfe_per_update": round(d.nfe["updates"] / updates, 1), "wall": d.elapsed,
                            "skipped": d.skipped, "peak_rss_mb": round(peak_rss_mb()) if only else None, **r})
                print(f"{row.name} @ {steps}: fd {r['fd']:.2f} precision {r['precision']:.3f} "
                      f"recall {r['recall']:.3f} ({d.elapsed:.0f} s)", flush=True)
    return out


def table(results: list[dict]) -> str:
    memory = any(r.get("peak_rss_mb") for r in results)
    head = "| method | steps | FD | precision | recall | updates | NFE/update | distil wall s | updates/s |"
    lines = [head + (" peak RSS MB |" if memory else ""), "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
             + ("---:|" if memory else "")]
    for r in sorted(results, key=lambda r: (-r["steps"], r["name"] != "undistilled", r["fd"])):
        rate = f"{r['updates'] / r['wall']:.2f}" if r["wall"] else "—"
        lines.append(f"| {r['name']} | {r['steps']} | {r['fd']:.2f} | {r['precision']:.3f} | {r['recall']:.3f} "
                     f"| {r['updates']} | {r['nfe_per_update']} | {r['wall']:.0f} | {rate} |"
                     + (f" {r.get('peak_rss_mb') or '—'} |" if memory else ""))
    floor = results[0]["floor"]
    lines.append(f"| real held-out digits (floor, n={floor['n']}) | — | {floor['fd']:.2f} | {floor['precision']:.3f} "
                 f"| {floor['recall']:.3f} | — | — | — | — |" + (" — |" if memory else ""))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--table", choices=sorted(TABLES), default="schedulers")
    parser.add_argument("--base", default="digits", help="model to distil (a model of the digits)")
    parser.add_argument("--updates", type=int, default=3000)
    parser.add_argument("--num", type=int, default=1000)
    parser.add_argument("--only", nargs="*", help="rows to run: names or 0-based indices, and/or 'undistilled'")
    parser.add_argument("--json", type=Path, help="also write the raw results here")
    parser.add_argument("--threads", type=int, help="torch CPU threads")
    parser.add_argument("--from-json", type=Path, nargs="*", help="render the table from results saved by --json")
    parser.add_argument("--write", action="store_true", help="update docs/benchmarks.md")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    rows, start, end = TABLES[args.table]
    if args.base != "digits":  # another base model: its own section, named after the file
        label = f"{args.table}-{Path(args.base).stem}"
        start, end = f"<!-- {label}:start -->", f"<!-- {label}:end -->"
    if args.from_json:
        saved = [json.loads(p.read_text()) for p in args.from_json]
        results = [r for s in saved for r in s["results"]]
        results.sort(key=lambda r: r["name"] != "undistilled")  # the floor is read from the first row
        peak_mb = max(s["peak_rss_mb"] for s in saved)
    else:
        results = run(rows, args.updates, args.num, args.only, args.base)
        peak_mb = peak_rss_mb()
    threads = f" --threads {args.threads}" if args.threads else ""
    base = f" --base {args.base}" if args.base != "digits" else ""
    text = (f"Command: `python benchmarks/distill.py --table {args.table}{base} --updates {args.updates} "
            f"--num {args.num}"
            f"{threads} --write` — {platform.machine()}, torch {torch.__version__}; "
            f"batch 64, lr 3e-5, EMA teacher (unless the row says otherwise), authors' weight, EMA 0.999, x0 "
            f"clipped; peak RSS {peak_mb:.0f} MB. "
            f"FD with the digits classifier's features, n = {args.num} samples vs the 1500 training digits.\n\n"
            + table(results))
    print(text)
    if args.json:
        args.json.write_text(json.dumps({"results": results, "peak_rss_mb": peak_mb}, default=str, indent=1))
    if args.write:
        write_section(text, start, end)


if __name__ == "__main__":
    main()
