"""Start-up: wall time of the interactive commands against `python -c pass`, torch installed; the table in
docs/benchmarks.md ("Start-up").

    python benchmarks/startup.py [--repeats 10] [--write]

Targets (issue 14): `dsd sample --model m8.onnx --steps 8 --num 64 out.png` within 1.5 s of `python -c pass`,
`dsd --help` under 0.5 s. The ONNX file is exported once, before timing. Each cell: median over the repeats,
the commands interleaved; `dsd` is the installed console script.
"""

from __future__ import annotations

import argparse
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from quality import write_section  # noqa: E402  (benchmarks/ is the script's folder)


def commands(folder: Path) -> dict[str, list[str]]:
    dsd = shutil.which("dsd") or "dsd"
    onnx, out = str(folder / "m8.onnx"), str(folder / "out.png")
    return {
        "python -c pass": [sys.executable, "-c", "pass"],
        "python -c 'import torch' (for scale)": [sys.executable, "-c", "import torch"],
        "dsd --help": [dsd, "--help"],
        "dsd sample --model m8.onnx --steps 8 --num 64 out.png": [
            dsd, "sample", "--model", onnx, "--steps", "8", "--num", "64", "--force", out],
        "dsd sample --steps 8 --num 64 out.png (torch)": [dsd, "sample", "--steps", "8", "--num", "64", "--force", out],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--write", action="store_true", help="update docs/benchmarks.md")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        subprocess.run([shutil.which("dsd") or "dsd", "export", "--onnx", "--model", "digits-v-dsd8", "--steps", "8",
                        "--threads", "1", str(folder / "m8.onnx")], check=True, capture_output=True)
        times: dict[str, list[float]] = {}
        for _ in range(args.repeats):
            for name, cmd in commands(folder).items():
                start = time.perf_counter()
                subprocess.run(cmd, check=True, capture_output=True)
                times.setdefault(name, []).append(time.perf_counter() - start)
    base = statistics.median(times["python -c pass"])
    lines = [f"`python benchmarks/startup.py --repeats {args.repeats} --write` — {platform.machine()}, Python "
             f"{platform.python_version()}, torch installed; median wall time over {args.repeats} runs", "",
             "| command | wall time (s) | minus `python -c pass` (s) |", "|---|---:|---:|"]
    for name, values in times.items():
        t = statistics.median(values)
        lines.append(f"| `{name}` | {t:.3f} | {t - base:.3f} |")
    text = "\n".join(lines)
    print(text)
    if args.write:
        write_section(text, "<!-- startup:start -->", "<!-- startup:end -->")


if __name__ == "__main__":
    main()
