"""The stage-end rule (`--stop-when-worse K`): a stage of a run that keeps its best snapshots ends after K
agreement checks without a new best, and the next stage (and the shipped model) starts from the stage's best
snapshot. The agreement is scripted per update here, so the rule is tested exactly whatever the CPU's kernels."""

from __future__ import annotations

import pytest
import torch

from dsd_core.checkpoint import load_model, load_tensors
from dsd_core.distill.config import DistillConfig
from dsd_core.distill.runner import Distiller
from dsd_core.events import QualityEvent, RestoreEvent, StageEndEvent, read_events

from .conftest import assert_resume_is_bit_identical

CPU = torch.device("cpu")
# PSNR by (update, target steps): stage 8→4 (updates 0–6) peaks at update 1 and ends after two worse checks at
# update 3 (updates 4–6 score only in a run without the rule); stage 4→2 (updates 6–12) peaks at update 10 and
# runs to its end (its last check is not early).
SCRIPT = {(0, 4): 20.0, (1, 4): 22.0, (2, 4): 21.0, (3, 4): 20.5, (4, 4): 20.0, (5, 4): 20.0, (6, 4): 20.0,
          (6, 2): 10.0, (7, 2): 12.0, (8, 2): 13.0, (9, 2): 12.5, (10, 2): 13.5, (11, 2): 13.2, (12, 2): 13.0}


def _scripted(tiny_ckpt, run_dir, **kw) -> Distiller:
    cfg = DistillConfig(**{**dict(method="dsd", schedule="iterative", n_from=8, n_to=2, updates=12, batch=4, lr=1e-3,
                                  sample_every=100, checkpoint_every=2, quality_every=1, quality_num=4,
                                  stop_when_worse=2), **kw})
    d = Distiller(load_model(tiny_ckpt), cfg, run_dir, CPU, "tiny", "sha")
    d.agreement.score = lambda loaded, steps: (4 / 10 ** (SCRIPT[(d.update, steps)] / 10), SCRIPT[(d.update, steps)])
    return d


def _weights(path):
    return load_tensors(path)[0]


def _snapshot_and_best(run_dir):
    return _weights(run_dir / "model-4steps.safetensors"), _weights(run_dir / "model-best-4steps.safetensors")


def test_a_stage_ends_after_k_checks_without_a_better_model_and_the_next_starts_from_its_best(tiny_ckpt, tmp_path):
    d = _scripted(tiny_ckpt, tmp_path)
    path = d.run_loop()
    events = read_events(tmp_path / "events.jsonl")
    checks = [(e.update, e.steps, e.best) for e in events if isinstance(e, QualityEvent)]
    assert checks[:4] == [(0, 4, True), (1, 4, True), (2, 4, False), (3, 4, False)]  # the stage's start is checked
    assert [(e.update, e.steps, e.skipped, e.checks) for e in events if isinstance(e, StageEndEvent)] == [(3, 4, 3, 2)]
    assert [(e.update, e.steps, e.psnr) for e in events if isinstance(e, RestoreEvent)] == [(6, 4, 22.0), (12, 2, 13.5)]
    assert d.updates_run == 9 and d.update == 12
    # the 4-step snapshot, taken after the restore, is the best-agreeing model of its stage
    snapshot, best4 = _snapshot_and_best(tmp_path)
    assert all(torch.equal(snapshot[k], best4[k]) for k in best4)
    assert path.read_bytes() == (tmp_path / "model-best-2steps.safetensors").read_bytes()
    provenance = load_model(path).meta["provenance"]
    assert provenance["updates"] == 7 and provenance["update_budget"] == 12  # 3 + 4 updates up to the best
    assert provenance["nfe_per_update"] == pytest.approx(2 * 4 * d.updates_run / d.updates_run)


@pytest.mark.parametrize("without", [{"keep": "last"},  # patience applies only where the best is kept
                                     {"stop_when_worse": 0}])  # the default: the best is shipped, nothing more
def test_without_the_rule_stages_run_their_budget_and_go_on_from_their_last_weights(tiny_ckpt, tmp_path, without):
    d = _scripted(tiny_ckpt, tmp_path, **without)
    d.run_loop()
    assert d.cfg.patience == 0 and d.updates_run == 12
    events = read_events(tmp_path / "events.jsonl")
    assert not [e for e in events if isinstance(e, (StageEndEvent, RestoreEvent))]
    snapshot, best4 = _snapshot_and_best(tmp_path)
    assert not all(torch.equal(snapshot[k], best4[k]) for k in best4)


@pytest.mark.parametrize("kill_at", [3, 8])  # at the early end (resumed from update 2); after it (from the jump)
def test_a_run_with_an_early_stage_end_resumes_bit_identical(tiny_ckpt, tmp_path, kill_at):
    resumed = assert_resume_is_bit_identical(lambda run_dir: _scripted(tiny_ckpt, run_dir), tmp_path, kill_at)
    resumed.load_state()
    assert resumed.updates_run == 9 and resumed.update == 12


def test_patience_is_counted_in_checks_and_zero_turns_it_off():
    assert DistillConfig(method="dsd", stop_when_worse=3).patience == 3
    assert DistillConfig(method="dsd", stop_when_worse=0).patience == 0
    assert DistillConfig(method="dsd", stop_when_worse=3, quality_every=0).patience == 0  # no checks, no rule
    assert DistillConfig(method="dsd-stage", stop_when_worse=3).patience == 0  # keeps its last model
    assert DistillConfig(method="tsd", stop_when_worse=3).patience == 0  # keep auto = last for a fixed teacher
    assert DistillConfig(method="tsd", keep="best", stop_when_worse=3).patience == 3
