"""What one update of each method costs at the model sizes people use: diffusers `UNet2DModel`s of random
weights, timed and counted as `distill_cost.py` does, each peak split into its terms, and a projection of those
terms to an SD-1.5-sized UNet. Into docs/benchmarks.md (`--write`).

    python benchmarks/distill_cost_sizes.py [--sizes ddpm-cifar10 unet-109m] [--batches 1 8 32] [--rounds 5]
        [--warmup 2] [--amp off bf16] [--device auto] [--threads 1] [--project-batch 8] [--write]
    python benchmarks/distill_cost_sizes.py --smoke   # a tiny UNet, batches 1 and 2, 2 rounds: seconds

Models (32×32×3, ε-prediction, linear β; the weights' values do not change the cost):
- ddpm-cifar10: the architecture of DDPM's CIFAR-10 model, google/ddpm-cifar10-32's config.json (widths 128,
  256, 256, 256; 2 ResBlocks per level; single-head attention at 16×16 and in the middle; dropout 0 as that
  config has it; the paper trained with 0.1), 35,746,307 parameters: the paper's 35.7 M.
- unet-109m: the same config at widths 224, 448, 448, 448: 109,391,747 parameters.

Each variant of `distill_cost.VARIANTS` (DSD, DSD with the teacher in 2 and 4 slices, TSD, dsd-stage, PD) is
timed interleaved (median of `--rounds` after `--warmup` rounds) and its peak counted exactly: the tensors alive
before an update plus the peak of the update's own allocations (torch's profiler on the CPU,
`torch.cuda.max_memory_allocated` on a GPU). PD trains on 256 random images uniform in [−1, 1]: what the images
show does not change what an update costs. Runs use a 2-step target (stages of 4 steps), which keeps the
pool's warm-up short; an update costs the same at any step count.

The full CPU run, `python benchmarks/distill_cost_sizes.py --threads 1 --write` (both sizes, batches 1, 8 and
32, amp off: 7 interleaved rounds of 8 jobs, then 3 updates of each variant for memory), holds all six variants
of unet-109m at once: ≈ 15 GB of weights, EMA, Adam state, teachers and gradients, ≈ 18 GB with batch 32's
activations. Its time, estimated from single updates timed on this 2-core machine under other load (one
thread; DSD / PD at batch 1: 1.0 / 1.1 s for ddpm-cifar10, 3.3 / 2.5 s for unet-109m; at batch 8: 4.5 / 5.4 s
and 15 / 16 s; linear in the batch beyond): ≈ 30 min for ddpm-cifar10 and ≈ 1.5 h for unet-109m, ≈ 2 h in all
with `--threads 1`; ≈ 1.2 h with `--threads 2` if the second core gives ×1.7 (less while other jobs use it).
`--smoke` takes ≈ 13 s. On a GPU, `python benchmarks/distill_cost_sizes.py --device cuda --rounds 20 --write`
(amp off and bf16) should take minutes.
"""

from __future__ import annotations

import argparse
import copy
import gc
import platform
import sys
import tempfile

import distill_cost as cost  # noqa: E402  (benchmarks/ is the script's folder)
import torch
from distill_cost import MB, VARIANTS
from quality import write_section  # noqa: E402

from dsd_core.checkpoint import LoadedModel
from dsd_core.distill.config import DistillConfig
from dsd_core.distill.runner import Distiller
from dsd_core.models.diffusers_unet import DiffusersUNet, import_diffusers
from dsd_core.schedule import NoiseSchedule

START, END = "<!-- cost-sizes:start -->", "<!-- cost-sizes:end -->"
# google/ddpm-cifar10-32's config.json (the DDPM paper's CIFAR-10 model), less its widths and block types
DDPM_CIFAR10 = {"sample_size": 32, "in_channels": 3, "out_channels": 3, "layers_per_block": 2, "act_fn": "silu",
                "attention_head_dim": None, "center_input_sample": False, "downsample_padding": 0,
                "flip_sin_to_cos": False, "freq_shift": 1, "mid_block_scale_factor": 1, "norm_eps": 1e-6,
                "norm_num_groups": 32, "time_embedding_type": "positional"}
SIZES = {"ddpm-cifar10": (128, 256, 256, 256), "unet-109m": (224, 448, 448, 448), "tiny": (16, 32)}
DATA_IMAGES = 256  # PD's random training images
TERMS = ("weights", "Adam", "EMA", "teacher copy", "gradients", "pool + data", "activations")

# The projection: SD-1.5's UNet, trained in mixed precision, at 512 px (64×64×4 latents)
SD15_PARAMS = 860e6
SD15_SIDE = 64
FP16 = 0.5  # bytes of fp16 / fp32
PROJECTION = (  # (row, measured term it scales, dtype factor, rule)
    ("fp16 weights", "weights", FP16, "the copy the network runs in: fp16, ½ × the measured fp32 weights"),
    ("fp32 master weights", "weights", 1.0, "the copy the optimizer updates: fp32, as measured"),
    ("Adam state", "Adam", 1.0, "two fp32 moments per weight, as measured"),
    ("gradients", "gradients", FP16, "of the fp16 weights: fp16, ½ × the measured fp32"),
    ("EMA", "EMA", 1.0, "fp32, as measured"),
    ("teacher copy", "teacher copy", FP16, "frozen, inference only: fp16, ½ × the measured fp32"),
)
PROJECTED = {"DSD": "dsd", "dsd-stage / TSD": "dsd-stage (teacher frozen per stage)", "PD": "pd"}


def unet_config(widths: tuple[int, ...]) -> dict:
    """DDPM CIFAR-10's UNet at other widths: attention at the second level (16×16) and in the middle."""
    n = len(widths)
    return {**DDPM_CIFAR10, "block_out_channels": list(widths), "norm_num_groups": min(32, widths[0] // 2),
            "down_block_types": ["AttnDownBlock2D" if i == 1 else "DownBlock2D" for i in range(n)],
            "up_block_types": ["AttnUpBlock2D" if i == n - 2 else "UpBlock2D" for i in range(n)]}


def base_model(widths: tuple[int, ...], seed: int = 0) -> LoadedModel:
    """A random-weight UNet2DModel as a dsd model (ε-prediction, DDPM's linear β); nothing is written to disk."""
    torch.manual_seed(seed)
    unet = import_diffusers().UNet2DModel(**unet_config(widths))
    model = DiffusersUNet(unet)
    meta = {"kind": "model", "model_type": model.model_type, "provenance": {"source": "random weights"}}
    return LoadedModel(model, NoiseSchedule("linear", 1000), "eps", meta)


def parameter_count(widths: tuple[int, ...]) -> int:
    """Parameters of `unet_config(widths)`, built on torch's meta device (no memory, no initialisation)."""
    with torch.device("meta"):
        return sum(p.numel() for p in import_diffusers().UNet2DModel(**unet_config(widths)).parameters())


class RandomDataDistiller(Distiller):
    """A Distiller whose PD stages train on random images of the model's shape (nothing to load)."""

    def check_plan(self, base: LoadedModel) -> None:
        if "pd" in self.methods:
            c = base.model.config
            gen = torch.Generator().manual_seed(0)
            self.data_spec = "random"
            self.data = torch.rand(DATA_IMAGES, c.in_channels, c.image_size, c.image_size, generator=gen) * 2 - 1


def maker(proto: LoadedModel, device: torch.device, amp: str):
    """`distill_cost.distiller`'s signature for runs of copies of `proto` on `device` under `amp`."""

    def make(method: str, batch: int, tmp: str, **extra) -> Distiller:
        base = LoadedModel(copy.deepcopy(proto.model), proto.schedule, proto.prediction, proto.meta)
        cfg = DistillConfig(method=method, schedule="naive", n_to=2, updates=10**6, batch=batch, quality_every=0,
                            amp=amp, **{"teacher_first": "off", **extra})  # the 2-NFE update, as measured
        d = RandomDataDistiller(base, cfg, tempfile.mkdtemp(dir=tmp), device, "random", "")
        d.start_stage(0)
        return d

    return make


def cuda_update_peak_bytes(d: Distiller) -> int:
    """The GPU's peak allocation during one update above what was allocated before it."""
    d.opt.zero_grad(set_to_none=True)
    torch.cuda.synchronize()
    before = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    d.step()
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() - before


def decompose(resident: dict[str, int], update: int, grad_bytes: int) -> dict[str, int]:
    """An update's peak tensor memory by term, in bytes: what persists between updates by kind
    (`distill_cost.resident_bytes`), the gradients (made inside the update, as many bytes as the weights that
    train) and the activations: the rest of the update's own peak, its transients included. (Where the peak
    falls before all gradients exist, that rest is less than the forward pass's activations.)"""
    return {"weights": resident["weights"], "Adam": resident["optimizer"], "EMA": resident["EMA"],
            "teacher copy": resident["frozen teacher"], "gradients": grad_bytes,
            "pool + data": resident["pool + data"], "activations": update - grad_bytes,
            "peak": sum(resident.values()) + update}


def measure(widths, batches, rounds: int, warmup: int, device: torch.device, amp: str, tmp: str) -> dict:
    """{batch: {"time": `distill_cost.interleaved`'s result, "terms": {variant: `decompose`}}} of one size."""
    proto = base_model(widths)
    make = maker(proto, device, amp)
    grad_bytes = sum(p.numel() * p.element_size() for p in proto.model.parameters() if p.requires_grad)
    peak = cuda_update_peak_bytes if device.type == "cuda" else cost.update_peak_bytes
    out = {}
    for batch in batches:
        timing = cost.interleaved(batch, rounds, tmp, warmup, make)
        gc.collect()  # the timed runs (their modules hold cycles) are freed before memory is counted
        mem = cost.memory(batch, tmp, make, peak)
        out[batch] = {"time": timing, "terms": {label: decompose(m["resident"], m["update"], grad_bytes)
                                                for label, m in mem.items()}}
    return out


def size_table(result: dict) -> str:
    lines = ["| batch | method | NFE/update | ms/update | time × PD | " + " | ".join(TERMS)
             + " | peak MB | peak × PD |", "|---:|---|" + "---:|" * (len(TERMS) + 5)]
    notes = []
    for batch, r in result.items():
        med, nfe, terms = r["time"]["median"], r["time"]["nfe"], r["terms"]
        for label, _, _ in VARIANTS:
            t = terms[label]
            lines.append(f"| {batch} | {label} | {nfe[label]:.0f} | {1000 * med[label]:.1f} | "
                         f"{med[label] / med['pd']:.2f} | " + " | ".join(f"{t[k] / MB:.1f}" for k in TERMS)
                         + f" | {t['peak'] / MB:.1f} | {t['peak'] / terms['pd']['peak']:.3f} |")
        f, fb = med["forward (no grad)"], med["forward + backward"]
        notes.append(f"batch {batch}: F {1000 * f:.1f} ms, FB {1000 * fb:.1f} ms, (F + FB)/(2F + FB) = "
                     f"{(f + fb) / (2 * f + fb):.2f}, measured DSD/PD {med['dsd'] / med['pd']:.2f}")
    return "\n".join(lines) + "\n\nThe network alone (F: forward without gradient, FB: forward + backward): " \
        + "; ".join(notes) + "."


def per_image(activations: dict[int, int]) -> float:
    """Activation bytes per image from {batch: bytes}: the slope between the two largest batches, which drops
    what does not grow with the batch (and the gradients' share of the peak, see `decompose`); one batch: bytes
    / batch."""
    points = sorted(activations.items())[-2:]
    if len(points) == 1:
        points.insert(0, (0, 0))
    (b1, a1), (b2, a2) = points
    return (a2 - a1) / (b2 - b1)


def project(terms: dict[str, int], params: float, act_per_image: float, side: int, to_batch: int,
            to_params: float = SD15_PARAMS, to_side: int = SD15_SIDE) -> dict[str, float]:
    """One method's projected bytes by row of `PROJECTION`, plus activations and total, from its terms (bytes,
    `decompose`) and activation bytes per image measured in fp32 on a model of `params` parameters at
    `side`×`side`: activations per image scale with parameters × pixels, halved for fp16, times `to_batch`."""
    rows = {name: terms[src] / params * factor * to_params for name, src, factor, _ in PROJECTION}
    rows["activations"] = act_per_image * (to_params / params) * (to_side / side) ** 2 * FP16 * to_batch
    rows["total"] = sum(rows.values())
    return rows


def projection_table(name: str, params: int, side: int, result: dict, to_batch: int, where: str) -> str:
    """The SD-1.5 projection from one size's fp32 `measure` result (its largest batch for the terms and time)."""
    batch = max(result)
    terms, med = result[batch]["terms"], result[batch]["time"]["median"]
    act = {col: per_image({b: r["terms"][label]["activations"] for b, r in result.items()})
           for col, label in PROJECTED.items()}
    proj = {col: project(terms[label], params, act[col], side, to_batch) for col, label in PROJECTED.items()}
    bpp = {src: max(terms[label][src] for label in PROJECTED.values()) / params for _, src, _, _ in PROJECTION}
    slope = "the slope between batches " + " and ".join(map(str, sorted(result)[-2:])) if len(result) > 1 \
        else f"at batch {batch}"
    lines = [f"| term | rule (each an assumption) | {' | '.join(PROJECTED)} |", "|---|---|" + "---:|" * len(PROJECTED),
             f"| UNet | SD-1.5's size: {SD15_PARAMS / 1e6:.0f} M parameters; 512 px images → {SD15_SIDE}×{SD15_SIDE}"
             f"×4 latents; the VAE and text encoder, frozen, not counted; batch {to_batch} |" + " |" * len(PROJECTED)]
    for row, src, _, rule in PROJECTION:
        lines.append(f"| {row} | {rule} (measured {bpp[src]:.2f} B/param) | "
                     + " | ".join(f"{proj[col][row] / 2**30:.2f}" for col in PROJECTED) + " |")
    lines += [f"| activations | per image, measured in fp32 on {name} at {side}×{side} ({slope}: "
              + ", ".join(f"{col} {act[col] / MB:.1f} MB" for col in PROJECTED)
              + f") × {SD15_PARAMS / 1e6:.0f} M / {params / 1e6:.1f} M parameters × ({SD15_SIDE}/{side})² pixels × ½ "
              f"(fp16) × {to_batch} images | " + " | ".join(f"{proj[c]['activations'] / 2**30:.2f}" for c in PROJECTED)
              + " |",
              "| **total GB** | | " + " | ".join(f"**{proj[c]['total'] / 2**30:.2f}**" for c in PROJECTED) + " |",
              "| memory × PD | | " + " | ".join(f"{proj[c]['total'] / proj['PD']['total']:.3f}" for c in PROJECTED)
              + " |",
              f"| time × PD | measured on {name} at batch {batch} ({where}), carried over as it is | "
              + " | ".join(f"{med[label] / med['pd']:.2f}" for label in PROJECTED.values()) + " |"]
    return "\n".join(lines) + (
        "\n\nA projection, not a measurement. The per-parameter rows follow from the dtypes alone and hold for any "
        "trainer that keeps what they say. The activation row is crude, an order of magnitude at best: activations "
        "grow with width × pixels × depth and parameters with width² × depth, so scaling by the parameter ratio "
        "overstates them for SD-1.5's wider levels (320–1280 channels), while SD-1.5's cross-attention and its "
        "self-attention at 64×64 (4,096 tokens; 4096² attention maps per head without a memory-efficient kernel), "
        "which no measured model has, add to them. GB = 2³⁰ bytes.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", choices=[s for s in SIZES if s != "tiny"],
                        default=["ddpm-cifar10", "unet-109m"])
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 8, 32])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--amp", nargs="+", choices=["off", "bf16"],
                        help="autocast modes to measure (default: off and bf16 on a GPU, off on the CPU)")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--project-batch", type=int, default=8, help="images per update in the SD-1.5 projection")
    parser.add_argument("--smoke", action="store_true", help="a tiny UNet, batches 1 and 2, 2 rounds (a check)")
    parser.add_argument("--write", action="store_true", help="update docs/benchmarks.md")
    args = parser.parse_args()
    if args.smoke and args.write:
        parser.error("--smoke measures a tiny model: its numbers are not written")
    if args.smoke:
        args.sizes, args.batches, args.rounds, args.warmup = ["tiny"], [1, 2], 2, 1
    torch.set_num_threads(args.threads)
    device = torch.device("cuda" if args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available())
                          else "cpu")
    amps = args.amp or (["off", "bf16"] if device.type == "cuda" else ["off"])
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{platform.machine()} CPU"
    diffusers = import_diffusers()
    text = [f"Command: `python benchmarks/distill_cost_sizes.py {' '.join(sys.argv[1:])}` — {where}, torch "
            f"{torch.__version__}, diffusers {diffusers.__version__}, {args.threads} thread(s); median of "
            f"{args.rounds} interleaved updates per variant after {args.warmup} warm-up round(s); memory counted from "
            "tensors and " + ("torch.cuda.max_memory_allocated" if device.type == "cuda" else
                              "torch's allocation records") + "; MB = 2²⁰ bytes. PD trains on random images (its "
            "cost does not depend on what they show)."
            + ("" if device.type == "cuda" or "bf16" in amps else " bf16 autocast is measured on the CPU only when "
               "`--amp bf16` is given.")]
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.sizes:
            params = parameter_count(SIZES[name])
            for amp in amps:
                print(f"measuring {name} (amp {amp}) ...", file=sys.stderr, flush=True)
                results[name, amp] = measure(SIZES[name], args.batches, args.rounds, args.warmup, device, amp, tmp)
                widths = ", ".join(map(str, SIZES[name]))
                text.append(f"#### {name}: widths {widths}, {params:,} parameters, 32×32×3, amp {amp} (terms in MB)\n\n"
                            + size_table(results[name, amp]))
    measured = [name for name in args.sizes if (name, "off") in results]
    if measured:
        name = max(measured, key=lambda n: parameter_count(SIZES[n]))
        params = parameter_count(SIZES[name])
        text.append(f"#### Projected to an SD-1.5-sized UNet, from {name}\n\n"
                    + projection_table(name, params, 32, results[name, "off"], args.project_batch, where))
    else:
        text.append("(No SD-1.5 projection: it scales fp32 measurements; add `--amp off`.)")
    if args.smoke:
        text.append("(`--smoke`: a check that the script works. The tiny model's projection scales its activations "
                    "by thousands of times its parameters and means nothing.)")
    out = "\n\n".join(text)
    print(out)
    if args.write:
        write_section(out, START, END)


if __name__ == "__main__":
    main()
