"""Copy a model checkpoint into dsd_core/assets as a built-in, its weights stored as float16.

Run by a maintainer when a new built-in is made (`python scripts/ship_model.py runs/X/model.safetensors NAME`).
float16 halves the package's share of the larger (RGB) models; dsd loads the weights into its float32 network,
so sampling runs as before on weights rounded to float16 (docs/benchmarks.md measures what that costs in FD).
The metadata is copied unchanged, but for `--guidance W`: the scale a conditional model samples with when none
is given (what a distilled model records as the scale it was distilled with), and for `--base NAME`: a model
distilled from a built-in's float32 original names that built-in as its base (not the maintainer's file path);
its `base_sha256` stays that of the float32 weights it was distilled from. The name still has to be added to
`dsd_core/builtins.py`.
"""

import argparse
from pathlib import Path

from dsd_core.checkpoint import load_tensors, save_tensors

ASSETS = Path(__file__).resolve().parents[1] / "dsd_core" / "assets"


def half_copy(src: Path, dst: Path, guidance: float | None = None, base: str | None = None) -> Path:
    tensors, meta = load_tensors(src)
    if meta.get("kind") != "model":
        raise SystemExit(f"{src} is not a dsd model checkpoint")
    if guidance is not None:
        meta = {**meta, "guidance": guidance}
    if base is not None:
        provenance = meta.get("provenance") or {}
        if "base_model" not in provenance:
            raise SystemExit(f"{src} was not distilled from a base model; --base applies to distilled models")
        meta = {**meta, "provenance": {**provenance, "base_model": base, "base_weights": "float32"}}
    return save_tensors(dst, {k: v.half() if v.is_floating_point() else v for k, v in tensors.items()}, meta)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("checkpoint", type=Path)
    p.add_argument("name", help="the built-in's name, e.g. emoji16-cond")
    p.add_argument("--guidance", type=float, help="default guidance scale of a conditional model")
    p.add_argument("--base", help="the built-in a distilled model was distilled from (its float32 original)")
    a = p.parse_args()
    out = half_copy(a.checkpoint, ASSETS / f"{a.name}.safetensors", a.guidance, a.base)
    print(f"wrote {out} ({out.stat().st_size / 2**20:.1f} MiB)")


if __name__ == "__main__":
    main()
