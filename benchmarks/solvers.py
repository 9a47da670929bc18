"""When does distilling pay? Training-free solvers on the undistilled models next to the shipped DSD models.

    python benchmarks/solvers.py [--num 1000] [--seeds 3] [--models digits digits-v digits-cond]
                                 [--steps 2 4 8 16] [--guidance 3] [--class all] [--section solvers] [--write]
    python benchmarks/solvers.py --models emoji16-cond --steps 2 4 8 --guidance 2 --class data \
                                 --section solvers-emoji --write

For each undistilled model in `--models`: DDIM, DPM-Solver++(2M), DPM-Solver++(3M) and UniPC (bh2) at each of
`--steps` (`dsd eval --model M --steps N --sampler S`), DDIM at 64 steps as the reference (`--reference-steps`),
and the shipped DSD-distilled versions of the model (`M-dsdN`, for the N of `--steps` that are shipped) at their own
step count with DDIM, their default. FD / precision / recall are the mean ± sd over noise seeds 0…K−1 (`--seeds`),
n = `--num` each, in the features of the model's data set's classifier against its train split, as `dsd eval`
chooses them (digits, emoji16, emoji); every row of a seed starts from the same noise. NFE per image is counted,
not assumed: classifier-free guidance costs two network evaluations a step.

A class-conditional model samples the classes of `--class` (default `all`: every class in turn; `data`: in the
proportions of the reference's labels, which the imbalanced emoji categories need) at one guidance scale for all
its rows, by default w = 3: the scale `digits-cond-dsd8` was distilled with and samples at by default (the
undistilled model's own default is w = 1, plain conditional sampling, which would not compare like with like);
its rows add how often the shipped classifier names the class asked for. `--write` replaces the section
`--section` (default `solvers`) of docs/benchmarks.md; `--json PATH` keeps every number (each seed's) for a later
look.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from dataclasses import asdict, dataclass

import torch
from quality import write_section  # noqa: E402  (benchmarks/ is the script's folder)

from dsd_core.builtins import available_builtins
from dsd_core.checkpoint import load_model
from dsd_core.classes import class_ids, class_names_of
from dsd_core.evaluate import (
    across_seeds,
    default_features,
    default_reference,
    evaluate,
    get_reference,
    per_class_accuracy,
)
from dsd_core.features import ClassifierFeatures
from dsd_core.guidance import null_class, resolve
from dsd_core.images import to_uint8
from dsd_core.nfe import NFECounter
from dsd_core.sampling import sample
from dsd_core.solvers_plan import LABEL, SAMPLERS

SECTION = "solvers"  # docs/benchmarks.md's markers: <!-- solvers:start --> … <!-- solvers:end -->
MODELS = ("digits", "digits-v", "digits-cond")
STEPS = (2, 4, 8, 16)
REFERENCE_STEPS = 64
DISTILLED_STEPS = (8, 4, 2)  # the shipped DSD models: M-dsd8, M-dsd4, M-dsd2 where they exist
GUIDANCE = 3.0
METRICS = ("fd", "precision", "recall")


@dataclass(frozen=True)
class Row:
    base: str  # the undistilled model the row belongs to
    model: str
    method: str
    sampler: str
    steps: int


def rows_for(base: str, steps: list[int], shipped: list[str], reference_steps: int = REFERENCE_STEPS) -> list[Row]:
    """The reference (none for `reference_steps` 0), every solver at every step count, then the shipped distilled
    models; by step count."""
    rows = [Row(base, base, "undistilled", "ddim", reference_steps)] if reference_steps else []
    for n in sorted(steps):
        rows += [Row(base, base, "undistilled", s, n) for s in SAMPLERS]
        if n in DISTILLED_STEPS and f"{base}-dsd{n}" in shipped:
            rows.append(Row(base, f"{base}-dsd{n}", "DSD, shipped", "ddim", n))
    return rows


def judge(base: str):
    """The reference and features `dsd eval` would choose for the base model: its data set's train split and
    classifier."""
    loaded = load_model(base)
    cfg = loaded.model.config
    data = loaded.meta.get("provenance", {}).get("data")
    ref = get_reference(default_reference((cfg.image_size, cfg.image_size, cfg.in_channels), data))
    return ref, ClassifierFeatures(default_features(ref))


def score(row: Row, num: int, seeds: int, guidance: float, class_spec: str, ref, feats) -> dict:
    """Sample the row's model once per seed, score each draw; mean ± sd over the seeds."""
    loaded, counter = load_model(row.model), NFECounter()
    k = null_class(loaded.model)
    conditional = k is not None
    classes, w = resolve(loaded.model, loaded.guidance, None, guidance if conditional else None, num)
    if conditional:
        names = class_names_of(loaded.meta.get("provenance", {}).get("data"))
        classes = class_ids(class_spec, num, k, names, ref.label_counts)
    runs, accuracy, seconds = [], [], 0.0
    for seed in range(seeds):
        start = time.perf_counter()
        images = to_uint8(sample(loaded, row.steps, num, seed, batch=250, counter=counter, classes=classes,
                                 guidance=w, sampler=row.sampler))
        seconds += time.perf_counter() - start
        runs.append(evaluate(images, ref, feats, warn=False))
        if classes is not None:
            accuracy.append(per_class_accuracy(feats.classify(images)[1], classes, null_class(loaded.model))
                            ["accuracy"])
    out = {**asdict(row), "nfe": counter.per_sample(num * seeds), "guidance": w if conditional else None,
           "ms_per_image": 1000 * seconds / (num * seeds), "scores": across_seeds(runs, METRICS)}
    if accuracy:
        out["accuracy"] = across_seeds([{"accuracy": a} for a in accuracy], ("accuracy",))["accuracy"]
    s = out["scores"]
    print(f"{row.model} {row.steps} steps {row.sampler}: fd {s['fd']['mean']:.2f} ± {s['fd']['sd']:.2f}, "
          f"nfe {out['nfe']:g}", flush=True)
    return out


def cell(spread: dict, digits: int, scale: float = 1.0) -> str:
    return f"{scale * spread['mean']:.{digits}f} ± {scale * spread['sd']:.{digits}f}"


def table(results: list[dict], reference_steps: int = REFERENCE_STEPS) -> str:
    """One table: method, sampler, steps, NFE / image, FD, precision, recall (and the asked-for digit)."""
    cond = any("accuracy" in r for r in results)
    head = ("| model | method | sampler | steps | NFE / image | FD | precision | recall |"
            + (" asked-for class (%) |" if cond else ""))
    lines = [head, "|---|---|---|---:|---:|---:|---:|---:|" + ("---:|" if cond else "")]
    for r in results:
        s = r["scores"]
        method = r["method"]
        if r["steps"] == reference_steps and r["sampler"] == "ddim" and method == "undistilled":
            method += ", reference"
        line = (f"| {r['model']} | {method} | {LABEL[r['sampler']]} | {r['steps']} | {r['nfe']:g} | {cell(s['fd'], 2)} "
                f"| {cell(s['precision'], 3)} | {cell(s['recall'], 3)} |")
        if cond:
            line += f" {cell(r['accuracy'], 1, 100)} |" if "accuracy" in r else " — |"
        lines.append(line)
    return "\n".join(lines)


def section(results: list[dict], args: argparse.Namespace) -> str:
    conditional = any(r["guidance"] is not None for r in results)
    command = (f"python benchmarks/solvers.py --num {args.num} --seeds {args.seeds} --models {' '.join(args.models)} "
               f"--steps {' '.join(map(str, args.steps))}"
               + (f" --guidance {args.guidance:g}" if conditional else "")
               + (f" --class {args.class_spec}" if conditional and args.class_spec != "all" else "")
               + (f" --section {args.section}" if args.section != SECTION else "")
               + (f" --reference-steps {args.reference_steps}" if args.reference_steps != REFERENCE_STEPS else "")
               + (f" --threads {args.threads}" if args.threads else "") + " --write")
    judged = sorted({f"{r['features']}-classifier features against the {r['reference']} train split"
                     for r in results})
    parts = [f"Command: `{command}` — {platform.processor() or platform.machine()}, {torch.get_num_threads()} "
             f"torch threads, torch {torch.__version__}. FD, precision and recall: mean ± sd over noise seeds "
             f"0…{args.seeds - 1}, n = {args.num} each, {'; '.join(judged)}; every "
             "row of a seed starts from the same noise. NFE per image as counted (guidance: two per step). "
             "Undistilled rows use `--sampler`; the DSD rows are the shipped distilled models with DDIM, their "
             "default. By construction (diffusers' rules) every solver is DDIM at 2 steps (the last step is first "
             "order, and UniPC's one correction moves a point that last step does not read), and "
             "DPM-Solver++(3M) is 2M at 4 steps or fewer."]
    for base in args.models:
        rows = [r for r in results if r["base"] == base]
        title = f"**{base}**"
        if rows and rows[0]["guidance"] is not None:
            w = rows[0]["guidance"]
            mix = "every class in turn" if args.class_spec == "all" else f"classes: {args.class_spec}"
            if args.class_spec == "data":
                mix = "classes in the proportions of the reference's labels"
            title += (f", {mix}, classifier-free guidance w = {w:g} in every row"
                      + (" (the scale digits-cond-dsd8 was distilled with)" if w == GUIDANCE else ""))
        parts += [title, table(rows, args.reference_steps)]
    return "\n\n".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num", type=int, default=1000, help="samples per seed and row (default 1000)")
    parser.add_argument("--seeds", type=int, default=3, help="noise seeds 0…K−1 (default 3)")
    parser.add_argument("--models", nargs="+", default=list(MODELS), help=f"undistilled models (default: "
                                                                           f"{' '.join(MODELS)})")
    parser.add_argument("--steps", nargs="+", type=int, default=list(STEPS),
                        help=f"step counts of the solvers (default: {' '.join(map(str, STEPS))})")
    parser.add_argument("--guidance", type=float, default=GUIDANCE,
                        help=f"guidance w of every row of a conditional model (default {GUIDANCE:g})")
    parser.add_argument("--class", dest="class_spec", default="all",
                        help="classes of a conditional model: all (in turn), data (the reference's mix), an id or "
                             "a name (default all)")
    parser.add_argument("--reference-steps", type=int, default=REFERENCE_STEPS,
                        help=f"DDIM steps of the reference row (default {REFERENCE_STEPS}; 0: no reference row)")
    parser.add_argument("--section", default=SECTION, help=f"docs/benchmarks.md section to write (default "
                                                           f"{SECTION})")
    parser.add_argument("--threads", type=int, help="torch CPU threads")
    parser.add_argument("--json", help="also write every result (each seed's scores) to this file")
    parser.add_argument("--write", action="store_true", help="update docs/benchmarks.md")
    args = parser.parse_args()
    shipped = available_builtins()
    unknown = [m for m in args.models if m not in shipped]
    if unknown:
        parser.error(f"not a shipped model: {', '.join(unknown)} (shipped: {', '.join(shipped)})")
    if any(n < 1 for n in args.steps) or args.seeds < 1 or args.num < 10 or args.reference_steps < 0:
        parser.error("--steps must be ≥ 1, --seeds ≥ 1, --num ≥ 10 and --reference-steps ≥ 0")
    if args.threads:
        torch.set_num_threads(args.threads)
    results = []
    for base in args.models:
        ref, feats = judge(base)
        results += [{**score(row, args.num, args.seeds, args.guidance, args.class_spec, ref, feats),
                     "reference": ref.name, "features": feats.name}
                    for row in rows_for(base, args.steps, shipped, args.reference_steps)]
    text = section(results, args)
    print(text)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    if args.write:
        write_section(text, f"<!-- {args.section}:start -->", f"<!-- {args.section}:end -->")


if __name__ == "__main__":
    main()
