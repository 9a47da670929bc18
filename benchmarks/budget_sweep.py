"""Does a method get better with budget? Scores of distillation runs at 8, 4 and 2 steps, over noise seeds.

    python benchmarks/budget_sweep.py RUN_DIR ... [--num 1000] [--seeds 3] [--write]

The runs are made by `dsd distill` itself (one per method and budget, one thread each, e.g.
`dsd distill --method pd --data digits --from 32 --to 2 --updates 16000 --threads 1 --run-dir sweep/pd-16k`),
so the sweep measures what a user gets. Each run is scored as it ships: `model.safetensors` at its target
step count, `model-Nsteps.safetensors` (the stage's snapshot) at the others. Scores are cached in the run
folder (`sweep-scores.json`, keyed by the number of samples and seeds), so a table can be re-rendered as runs
are added. `--write` puts the table in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from quality import write_section  # noqa: E402  (benchmarks/ is the script's folder)

from dsd_core.distill.config import DistillConfig, teacher_first_rule

START, END = "<!-- budget-sweep:start -->", "<!-- budget-sweep:end -->"
STEPS = (8, 4, 2)


def run_facts(run: Path) -> dict:
    """What the table says about a run, from its config and its event log."""
    config = json.loads((run / "config.json").read_text())
    d = config["distill"]
    events = read_lines(run / "events.jsonl")
    end = next((e for e in reversed(events) if e["event"] == "end"), None)
    if end is None:
        raise SystemExit(f"{run} has not finished")
    nfe = end["nfe"]["updates"]
    updates_run = len({e["update"] for e in events if e["event"] == "loss"})  # a resume repeats some
    return {"run": str(run), "base": config["base_model"], "method": label(d), "budget": d["updates"],
            "updates_run": updates_run,
            "nfe_per_update": round(nfe / max(updates_run, 1) / d["batch"], 2), "wall": end["wall_seconds"],
            "n_to": d["n_to"]}


def label(d: dict) -> str:
    """The method as the table names it: DSD's stage rule and what it ships, a learning rate off the default."""
    lr = f", lr {d['lr']:g}" if d["method"] != "pd" and d["lr"] != 3e-5 else ""
    if d["method"] == "dsd" and not d.get("stop_when_worse"):
        return "dsd (EMA teacher), " + ("last" if d.get("keep") == "last" else "best-agreeing") + lr
    rule = f", stop after {d['stop_when_worse']}" if d.get("stop_when_worse") and d.get("keep") != "last" and \
        d["method"] in ("dsd", "dsd-anchor") else ""
    decay = ", cosine lr" if d.get("lr_decay", "constant") != "constant" else ""
    stages = teacher_first_rule(d.get("teacher_first", DistillConfig.FILE_DEFAULTS["teacher_first"]), d["method"],
                                d["n_to"])
    first = {"all": ", teacher first", "last": ", teacher first in the last stage"}.get(stages, "")
    return d["method"] + first + rule + lr + decay


def read_lines(path: Path) -> list[dict]:
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


def model_at(run: Path, steps: int, n_to: int) -> Path:
    return run / ("model.safetensors" if steps == n_to else f"model-{steps}steps.safetensors")


def score_run(run: Path, n_to: int, num: int, seeds: int) -> dict:
    """{steps: across-seeds scores} of the run's shipped models, cached in the run folder."""
    cache = run / "sweep-scores.json"
    key = f"n{num}-seeds{seeds}"
    cached = json.loads(cache.read_text()) if cache.exists() else {}
    if key in cached:
        return cached[key]
    from dsd_core.checkpoint import load_model
    from dsd_core.evaluate import across_seeds, digits_reference, evaluate
    from dsd_core.features import DigitsFeatures
    from dsd_core.images import to_uint8
    from dsd_core.sampling import sample

    ref, feats, out = digits_reference(), DigitsFeatures(), {}
    for steps in STEPS:
        path = model_at(run, steps, n_to)
        if not path.is_file():
            continue
        loaded = load_model(path)
        results = [evaluate(to_uint8(sample(loaded, steps, num, seed, batch=250)), ref, feats, warn=False)
                   for seed in range(seeds)]
        out[str(steps)] = across_seeds(results, ("fd", "precision", "recall"))
    cached[key] = out
    cache.write_text(json.dumps(cached, indent=1))
    return out


def table(runs: list[Path], num: int, seeds: int) -> str:
    rows = []
    for run in runs:
        facts = run_facts(run)
        scores = score_run(run, facts["n_to"], num, seeds)
        for steps, s in scores.items():
            rows.append((int(steps), facts, s))
    rows.sort(key=lambda r: (r[1]["base"], -r[0], r[1]["method"], r[1]["budget"]))
    head = ("| base | steps | method | budget (updates) | FD | precision | recall | updates run "
            "| NFE per sample and update | wall s |\n|---|---:|---|---:|---:|---:|---:|---:|---:|---:|")
    lines = [head]
    for steps, f, s in rows:
        ms = {m: f"{s[m]['mean']:.{2 if m == 'fd' else 3}f} ± {s[m]['sd']:.{2 if m == 'fd' else 3}f}"
              for m in ("fd", "precision", "recall")}
        lines.append(f"| {f['base']} | {steps} | {f['method']} | {f['budget']} | {ms['fd']} | {ms['precision']} "
                     f"| {ms['recall']} | {f['updates_run']} | {f['nfe_per_update']} | {f['wall']:.0f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--num", type=int, default=1000)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--write", action="store_true", help="update docs/benchmarks.md")
    args = parser.parse_args()
    text = (f"Command: `python benchmarks/budget_sweep.py RUNS --num {args.num} --seeds {args.seeds}`; FD, precision "
            f"and recall as mean ± sd over noise seeds 0…{args.seeds - 1}, n = {args.num} each, digits-classifier "
            "features.\n\n" + table(args.runs, args.num, args.seeds))
    print(text)
    if args.write:
        write_section(text, START, END)


if __name__ == "__main__":
    main()
