"""Class-conditional digits: does `digits-cond` draw the digit it is asked for, with and without guidance, and
does its DSD-distilled version keep that at 8 steps? The cond section of docs/benchmarks.md.

    python benchmarks/cond.py [--per-class 100] [--seed 0] [--write]

For each row, `per-class` images of every digit 0…9 (so 1,000 by default, ids cycling), the same noise in
every row; the shipped digits classifier names each image, and the table gives how often it names the digit
that was asked for (overall and the worst class), the FD / precision / recall of the balanced set against
the training digits (digits-classifier features, `dsd eval`'s path) and the NFE per image as counted.
Guidance w: uncond + w·(cond − uncond); w = 0 ignores the class (the 10 % line is chance), w = 1 is the
plain conditional model.
"""

from __future__ import annotations

import argparse
import re
import time
from pathlib import Path

from dsd_core.checkpoint import load_model
from dsd_core.classes import class_ids
from dsd_core.evaluate import digits_reference, evaluate, per_class_accuracy
from dsd_core.features import DigitsFeatures
from dsd_core.images import to_uint8
from dsd_core.nfe import NFECounter
from dsd_core.sampling import sample

DOC = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"
START, END = "<!-- cond:start -->", "<!-- cond:end -->"
ROWS = [("digits-cond", 64, w) for w in (0.0, 1.0, 3.0)] + [("digits-cond", 8, w) for w in (0.0, 1.0, 3.0)] + \
       [("digits-cond-dsd8", 8, w) for w in (0.0, 1.0, 3.0)]


def run(per_class: int, seed: int) -> list[dict]:
    ref, feats = digits_reference(), DigitsFeatures()
    num = 10 * per_class
    classes = class_ids("all", num, 10)
    out = []
    for model, steps, w in ROWS:
        loaded, counter = load_model(model), NFECounter()
        start = time.perf_counter()
        images = to_uint8(sample(loaded, steps, num, seed, batch=250, counter=counter, classes=classes, guidance=w))
        seconds = time.perf_counter() - start
        acc = per_class_accuracy(feats.classify(images)[1], classes, 10)
        r = evaluate(images, ref, feats)
        out.append({"model": model, "steps": steps, "w": w, "nfe": counter.per_sample(num), "acc": acc,
                    "seconds": seconds, **r})
        print(f"{model} {steps} steps w={w:g}: accuracy {acc['accuracy']:.3f}, fd {r['fd']:.2f}", flush=True)
    return out


def table(results: list[dict], per_class: int, seed: int) -> str:
    lines = [START, "", f"`python benchmarks/cond.py --per-class {per_class} --seed {seed} --write`: "
             f"{10 * per_class} samples per row ({per_class} per digit), classified by the shipped digits classifier "
             "(99.33 % on held-out real digits).", "",
             "| model | steps | guidance w | NFE / image | asked-for digit | worst digit | FD | precision | recall |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        worst = min(r["acc"]["per_class"].items(), key=lambda kv: kv[1])
        lines.append(f"| {r['model']} | {r['steps']} | {r['w']:g} | {r['nfe']:g} | {100 * r['acc']['accuracy']:.1f} % "
                     f"| {worst[0]}: {100 * worst[1]:.0f} % | {r['fd']:.2f} | {r['precision']:.3f} "
                     f"| {r['recall']:.3f} |")
    lines += ["", "Per digit (asked-for digit recognised, %):", "",
              "| model | steps | w | " + " | ".join(str(c) for c in range(10)) + " |",
              "|---|---:|---:|" + "---:|" * 10]
    for r in results:
        per = r["acc"]["per_class"]
        lines.append(f"| {r['model']} | {r['steps']} | {r['w']:g} | "
                     + " | ".join(f"{100 * per[str(c)]:.0f}" for c in range(10)) + " |")
    return "\n".join(lines + ["", END])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-class", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--write", action="store_true", help="replace (or append) the cond section of the doc")
    args = parser.parse_args()
    text = table(run(args.per_class, args.seed), args.per_class, args.seed)
    print(text)
    if args.write:
        doc = DOC.read_text()
        pattern = re.compile(re.escape(START) + ".*?" + re.escape(END), re.S)
        doc = pattern.sub(lambda _: text, doc) if pattern.search(doc) else doc.rstrip("\n") + "\n\n" + text + "\n"
        DOC.write_text(doc)


if __name__ == "__main__":
    main()
