"""Train-distillation against plain training: sample quality versus training step (the paper's Figure 3).

    python benchmarks/train_distill.py [--steps 2000] [--eval-every 250] [--num 1000] [--write]

Two runs from scratch on the digits with the same seed and recipe — plain denoising training, and the same
with a DSD update (towards 8 steps, its own optimizer at 0.1× the learning rate) after every training step —
run side by side, one process and one thread each. Every `--eval-every` steps the EMA weights are scored at
8, 4 and 64 sampling steps (FD with the digits classifier's features, n = `--num`, noise seed 1). Writes a
table into docs/benchmarks.md and a plot to docs/train_distill.png.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from PIL import Image, ImageDraw
from quality import DOC, write_section  # noqa: E402  (benchmarks/ is the script's folder)

from dsd_core.checkpoint import LoadedModel
from dsd_core.data import load_digits
from dsd_core.evaluate import digits_reference, evaluate
from dsd_core.features import DigitsFeatures
from dsd_core.images import to_uint8
from dsd_core.models import UNetConfig
from dsd_core.sampling import sample
from dsd_core.train import TrainConfig, Trainer

START, END = "<!-- train-distill:start -->", "<!-- train-distill:end -->"
VARIANTS = {"plain": {}, "self-distill": {"self_distill": True}}
EVAL_STEPS = (64, 8, 4)
PLOT = DOC.parent / "train_distill.png"


def one_run(variant: str, steps: int, every: int, num: int) -> dict:
    ref, feats = digits_reference(), DigitsFeatures()
    cfg = TrainConfig(steps=steps, batch=128, lr=5e-4, seed=0, sample_every=10**9, checkpoint_every=10**9,
                      **VARIANTS[variant])
    curve, start = [], time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(load_digits("train")[0], UNetConfig(), cfg, tmp, torch.device("cpu"), "digits:train")
        spent = {"eval": 0.0}

        def on_step(step: int, loss: float) -> None:
            if step % every and step != steps:
                return
            t0 = time.perf_counter()
            loaded = LoadedModel(trainer.ema.shadow, trainer.schedule, cfg.prediction)
            point = {"step": step, "train_seconds": round(t0 - start - spent["eval"], 1)}
            for n in EVAL_STEPS:
                r = evaluate(to_uint8(sample(loaded, n, num, seed=1, batch=500)), ref, feats)
                point[str(n)] = {k: round(r[k], 4) for k in ("fd", "precision", "recall")}
            trainer.model.train()
            spent["eval"] += time.perf_counter() - t0
            curve.append(point)
            print(variant, json.dumps(point), file=sys.stderr, flush=True)

        trainer.run_loop(on_step)
        sd_nfe = trainer.sd.nfe if trainer.sd is not None else 0
    return {"variant": variant, "curve": curve, "train_nfe": steps * cfg.batch, "sd_nfe": sd_nfe}


def plot(results: list[dict], path: Path) -> None:
    """FD (log scale) against training step, one panel per sampling step count; pillow only."""
    import math

    w, h, pad = 360, 260, 44
    img = Image.new("RGB", (w * len(EVAL_STEPS), h + 24), "white")
    d = ImageDraw.Draw(img)
    colours = {"plain": (40, 90, 200), "self-distill": (220, 80, 30)}
    for p, n in enumerate(EVAL_STEPS):
        x0 = p * w
        pts = [(pt["step"], pt[str(n)]["fd"]) for r in results for pt in r["curve"]]
        smax = max(s for s, _ in pts)
        lo, hi = math.log10(max(min(f for _, f in pts), 0.5)), math.log10(max(f for _, f in pts))
        hi = max(hi, lo + 0.5)

        def xy(s, f, x0=x0, smax=smax, lo=lo, hi=hi):
            return (x0 + pad + (w - pad - 10) * s / smax,
                    10 + (h - pad - 10) * (1 - (math.log10(max(f, 0.5)) - lo) / (hi - lo)))

        d.rectangle([x0 + pad, 10, x0 + w - 10, h - pad], outline=(0, 0, 0))
        for dec in range(math.floor(lo), math.ceil(hi) + 1):
            for m in (1, 2, 5):
                f = m * 10 ** dec
                if lo <= math.log10(f) <= hi:
                    _, y = xy(0, f)
                    d.line([x0 + pad - 4, y, x0 + pad, y], fill=(0, 0, 0))
                    d.text((x0 + 4, y - 6), f"{f:g}", fill=(0, 0, 0))
        d.text((x0 + pad, h - pad + 6), "0", fill=(0, 0, 0))
        d.text((x0 + w - 50, h - pad + 6), f"{smax}", fill=(0, 0, 0))
        d.text((x0 + pad + 60, h - pad + 20), f"training step - FD at {n} steps", fill=(0, 0, 0))
        for r in results:
            line = [xy(pt["step"], pt[str(n)]["fd"]) for pt in r["curve"]]
            d.line(line, fill=colours[r["variant"]], width=2)
            for x, y in line:
                d.ellipse([x - 2, y - 2, x + 2, y + 2], fill=colours[r["variant"]])
    for i, (name, c) in enumerate(colours.items()):
        d.text((10 + 140 * i, h + 6), f"-- {name}", fill=c)
    tmp = path.with_suffix(".tmp.png")
    img.save(tmp)
    tmp.replace(path)


def table(results: list[dict]) -> str:
    by = {r["variant"]: {pt["step"]: pt for pt in r["curve"]} for r in results}
    head = ("| step | " + " | ".join(f"FD@{n} plain | FD@{n} +DSD" for n in EVAL_STEPS)
            + " | train s plain | train s +DSD |")
    lines = [head, "|---:|" + "---:|" * (2 * len(EVAL_STEPS) + 2)]
    for step in sorted(by["plain"]):
        a, b = by["plain"][step], by["self-distill"].get(step)
        cells = [f"{a[str(n)]['fd']:.2f} | {b[str(n)]['fd']:.2f}" if b else f"{a[str(n)]['fd']:.2f} | —"
                 for n in EVAL_STEPS]
        lines.append(f"| {step} | " + " | ".join(cells) + f" | {a['train_seconds']:.0f} | "
                     + (f"{b['train_seconds']:.0f} |" if b else "— |"))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--eval-every", type=int, default=250)
    parser.add_argument("--num", type=int, default=1000)
    parser.add_argument("--variant", choices=sorted(VARIANTS), help=argparse.SUPPRESS)  # one run, in a subprocess
    parser.add_argument("--from-json", type=Path, help="render from results saved earlier")
    parser.add_argument("--json", type=Path, help="also save the raw results here")
    parser.add_argument("--write", action="store_true", help="update docs/benchmarks.md and docs/train_distill.png")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.variant:
        print(json.dumps(one_run(args.variant, args.steps, args.eval_every, args.num)))
        return
    if args.from_json:
        results = json.loads(args.from_json.read_text())
    else:
        procs = [subprocess.Popen([sys.executable, __file__, "--variant", v, "--steps", str(args.steps),
                                   "--eval-every", str(args.eval_every), "--num", str(args.num)],
                                  stdout=subprocess.PIPE, text=True) for v in VARIANTS]
        results = [json.loads(p.communicate()[0].strip().splitlines()[-1]) for p in procs]
        if args.json:
            args.json.write_text(json.dumps(results, indent=1))
    sd = next(r for r in results if r["variant"] == "self-distill")
    text = (f"Command: `python benchmarks/train_distill.py --steps {args.steps} --eval-every {args.eval_every} "
            f"--num {args.num} --write` — {platform.machine()}, torch {torch.__version__}, the two runs side by "
            f"side, one thread each. Default UNet, batch 128, lr 5e-4 (warm-up, cosine), seed 0; +DSD: one DSD "
            f"update (64 trajectories, naive →8, EMA teacher, lr 0.1× the training lr) after every training "
            f"step, {sd['sd_nfe']:,} extra NFE in all against {sd['train_nfe']:,} for training. FD of the EMA "
            f"weights, n = {args.num}, noise seed 1. Plot: `docs/train_distill.png`.\n\n" + table(results))
    print(text)
    if args.write:
        write_section(text, START, END)
        plot(results, PLOT)


if __name__ == "__main__":
    main()
