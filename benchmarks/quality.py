"""Sample quality of models at step counts, with the real-data floor: the table in docs/benchmarks.md.

    python benchmarks/quality.py [--num 1000] [--seed 0] [--write]

Each row is one line in ROWS; later issues add DSD, TSD and PD checkpoints there. All rows share the seed,
so row i and row j start from the same noise. `--write` replaces the quality section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import platform
import re
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from dsd_core.checkpoint import load_model
from dsd_core.evaluate import digits_reference, evaluate
from dsd_core.features import DigitsFeatures
from dsd_core.images import to_uint8
from dsd_core.nfe import NFECounter
from dsd_core.sampling import sample

DOC = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"
START, END = "<!-- quality:start -->", "<!-- quality:end -->"


@dataclass
class Row:
    label: str
    model: str
    steps: int


ROWS = [
    Row("undistilled", "digits", 64),
    Row("undistilled", "digits", 16),
    Row("undistilled", "digits", 8),
    Row("undistilled", "digits", 4),
    Row("undistilled", "digits", 2),
    Row("dsd iterative 32→2 (shipped)", "digits-dsd8", 8),
    Row("dsd iterative 32→2 (shipped)", "digits-dsd4", 4),
    Row("dsd iterative 32→2 (shipped)", "digits-dsd2", 2),
]


def run(num: int, seed: int) -> list[dict]:
    ref, feats = digits_reference(), DigitsFeatures()
    results = []
    for row in ROWS:
        loaded, counter = load_model(row.model), NFECounter()
        start = time.perf_counter()
        images = to_uint8(sample(loaded, row.steps, num, seed, batch=250, counter=counter))
        seconds = time.perf_counter() - start
        r = evaluate(images, ref, feats)
        results.append({"row": row, "nfe": counter.per_sample(num), "ms_per_image": 1000 * seconds / num, **r})
        print(f"{row.label} {row.model} {row.steps} steps: fd {r['fd']:.3f}", flush=True)
    return results


def table(results: list[dict]) -> str:
    floor = results[0]["floor"]
    n, nf = results[0]["n"], floor["n"]
    lines = [
        f"| model | method | steps | NFE/sample | FD (n={n}) | FD (n={nf}) | precision | recall | density | coverage "
        "| ms/image |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        row = r["row"]
        lines.append(
            f"| {row.model} | {row.label} | {row.steps} | {r['nfe']:g} | {r['fd']:.2f} | {r['fd_at_floor_n']:.2f} "
            f"| {r['precision']:.3f} | {r['recall']:.3f} | {r['density']:.3f} | {r['coverage']:.3f} "
            f"| {r['ms_per_image']:.2f} |"
        )
    lines.append(
        f"| real held-out digits (floor) | — | — | — | — | {floor['fd']:.2f} | {floor['precision']:.3f} "
        f"| {floor['recall']:.3f} | {floor['density']:.3f} | {floor['coverage']:.3f} | — |"
    )
    return "\n".join(lines)


def write_section(text: str, start: str = START, end: str = END) -> None:
    """Replace the text between two markers in docs/benchmarks.md (appending them if absent)."""
    doc = DOC.read_text() if DOC.exists() else "# Benchmarks\n"
    block = f"{start}\n{text}\n{end}"
    if start in doc:
        doc = re.sub(re.escape(start) + ".*?" + re.escape(end), lambda _: block, doc, flags=re.S)
    else:
        doc += "\n" + block + "\n"
    DOC.parent.mkdir(exist_ok=True)
    DOC.write_text(doc)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, help="torch CPU threads")
    parser.add_argument("--write", action="store_true", help="update docs/benchmarks.md")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    results = run(args.num, args.seed)
    text = (
        f"Command: `python benchmarks/quality.py --num {args.num} --seed {args.seed}"
        f"{f' --threads {args.threads}' if args.threads else ''} --write` — "
        f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads, "
        f"torch {torch.__version__}. Features: the shipped digits classifier (64-d); reference: the 1500 "
        f"training digits; floor: the 297 held-out digits scored the same way. FD grows as n shrinks, so "
        f"compare the floor with the FD (n={results[0]['floor']['n']}) column (the first samples of each row). "
        f"Precision/recall k = 3, density/coverage k = 5.\n\n" + table(results)
    )
    print(text)
    if args.write:
        write_section(text)


if __name__ == "__main__":
    main()
