"""Do the run's data-free agreement and the digits FD move together? Both over one run, from its events.

    python benchmarks/agreement_vs_fd.py RUN_DIR ... [--plot docs/agreement_vs_fd.png] [--write]

The runs must have been made with `--quality-fd N` (each `quality` event then carries the digits-classifier
FD, precision and recall of N samples beside the agreement PSNR). Per stage the table gives where each signal
was best and the rank correlation of PSNR with −FD over the stage's checks (1: they order the snapshots the
same way). The plot (pillow only) draws both against the update, one panel per run, stages marked.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from PIL import Image, ImageDraw
from quality import write_section  # noqa: E402  (benchmarks/ is the script's folder)

START, END = "<!-- agreement-fd:start -->", "<!-- agreement-fd:end -->"


def checks(run: Path) -> tuple[list[dict], str]:
    """The run's quality events that carry an FD (the last of each update, as a resume repeats some)."""
    by_update = {}
    config = json.loads((run / "config.json").read_text())["distill"]
    for line in (run / "events.jsonl").read_text().splitlines():
        try:
            e = json.loads(line)
        except json.JSONDecodeError:
            continue
        if e.get("event") == "quality" and e.get("fd") is not None:
            by_update[(e["update"], e["steps"])] = e
    name = f"{config['method']} {config['updates']} updates" + (", full stages" if not config.get("stop_when_worse")
                                                                 else "")
    return sorted(by_update.values(), key=lambda e: e["update"]), name


def ranks(values: list[float]) -> list[float]:
    order = sorted(range(len(values)), key=lambda i: values[i])
    out = [0.0] * len(values)
    for r, i in enumerate(order):
        out[i] = float(r)
    return out


def spearman(a: list[float], b: list[float]) -> float:
    if len(a) < 3:
        return math.nan
    ra, rb = ranks(a), ranks(b)
    ma, mb = sum(ra) / len(ra), sum(rb) / len(rb)
    cov = sum((x - ma) * (y - mb) for x, y in zip(ra, rb))
    var = math.sqrt(sum((x - ma) ** 2 for x in ra) * sum((y - mb) ** 2 for y in rb))
    return cov / var if var else math.nan


def table(runs: list[Path]) -> str:
    lines = ["| run | target steps | checks | best PSNR (update, FD there) | best FD (update, PSNR there) | "
             "rank corr. PSNR vs −FD |", "|---|---:|---:|---|---|---:|"]
    for run in runs:
        events, name = checks(run)
        for steps in sorted({e["steps"] for e in events}, reverse=True):
            es = [e for e in events if e["steps"] == steps]
            bp, bf = max(es, key=lambda e: e["psnr"]), min(es, key=lambda e: e["fd"])
            rho = spearman([e["psnr"] for e in es], [-e["fd"] for e in es])
            lines.append(f"| {name} | {steps} | {len(es)} | {bp['psnr']:.2f} dB ({bp['update']}, FD {bp['fd']:.2f}) "
                         f"| {bf['fd']:.2f} ({bf['update']}, {bf['psnr']:.2f} dB) | {rho:.2f} |")
    return "\n".join(lines)


def plot(runs: list[Path], path: Path) -> None:
    """Per run: PSNR (blue, left axis, dB) and FD (orange, right axis, log) against the update."""
    w, h, pad = 560, 240, 48
    img = Image.new("RGB", (w, (h + 30) * len(runs)), "white")
    d = ImageDraw.Draw(img)
    blue, orange = (40, 90, 200), (220, 110, 30)
    for p, run in enumerate(runs):
        events, name = checks(run)
        top = p * (h + 30) + 20
        umax = max(e["update"] for e in events) or 1
        plo, phi = min(e["psnr"] for e in events), max(e["psnr"] for e in events)
        flo, fhi = math.log10(min(e["fd"] for e in events)), math.log10(max(e["fd"] for e in events))
        phi, fhi = max(phi, plo + 1), max(fhi, flo + 0.3)

        def x(u, umax=umax):
            return pad + (w - 2 * pad) * u / umax

        def y(v, lo, hi, top=top):
            return top + (h - pad) * (1 - (v - lo) / (hi - lo))

        d.rectangle([pad, top, w - pad, top + h - pad], outline=(0, 0, 0))
        d.text((pad, top - 14), name, fill=(0, 0, 0))
        for steps in sorted({e["steps"] for e in events}):
            es = [e for e in events if e["steps"] == steps]
            d.line([x(es[0]["update"]), top, x(es[0]["update"]), top + h - pad], fill=(200, 200, 200))
            d.text((x(es[0]["update"]) + 2, top + 2), f"{steps}", fill=(120, 120, 120))
            d.line([(x(e["update"]), y(e["psnr"], plo, phi)) for e in es], fill=blue, width=2)
            d.line([(x(e["update"]), y(math.log10(e["fd"]), flo, fhi)) for e in es], fill=orange, width=2)
        d.text((4, top), f"{phi:.0f}", fill=blue)
        d.text((4, top + h - pad - 10), f"{plo:.0f}", fill=blue)
        d.text((4, top + (h - pad) / 2), "dB", fill=blue)
        d.text((w - pad + 4, top), f"{10 ** fhi:.0f}", fill=orange)
        d.text((w - pad + 4, top + h - pad - 10), f"{10 ** flo:.1f}", fill=orange)
        d.text((w - pad + 4, top + (h - pad) / 2), "FD", fill=orange)
        d.text((pad, top + h - pad + 4), f"update 0 … {umax}; grey: stage starts, with target steps",
               fill=(0, 0, 0))
    tmp = path.with_suffix(".tmp.png")
    img.save(tmp)
    tmp.replace(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--plot", type=Path, default=Path(__file__).resolve().parents[1] / "docs" /
                        "agreement_vs_fd.png")
    parser.add_argument("--write", action="store_true", help="update docs/benchmarks.md and the plot")
    args = parser.parse_args()
    text = "Command: `python benchmarks/agreement_vs_fd.py RUNS --write`.\n\n" + table(args.runs)
    print(text)
    if args.write:
        plot(args.runs, args.plot)
        write_section(text + f"\n\nPlot: `docs/{args.plot.name}`.", START, END)


if __name__ == "__main__":
    main()
