"""benchmarks/budget_sweep.py names each run's method from its config: the teacher-first rule (auto resolved as
the run resolved it, and the old flag) beside the stop rule, neither hiding the other."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from budget_sweep import label  # noqa: E402


def test_labels_name_the_teacher_first_rule_and_keep_the_stop_rule():
    base = {"lr": 3e-5, "n_to": 2}
    assert label({**base, "method": "dsd-stage"}) == "dsd-stage"  # runs older than the option
    assert label({**base, "method": "dsd-stage", "teacher_first": "auto"}) == \
        "dsd-stage, teacher first in the last stage"
    assert label({**base, "method": "tsd", "teacher_first": "auto"}) == "tsd"
    assert label({**base, "method": "dsd-stage", "teacher_first": "auto", "n_to": 4}) == "dsd-stage"
    assert label({**base, "method": "dsd-stage", "teacher_first": True}) == "dsd-stage, teacher first"
    assert label({**base, "method": "dsd-anchor", "teacher_first": "all", "stop_when_worse": 2, "keep": "best",
                  "lr_decay": "cosine"}) == "dsd-anchor, teacher first, stop after 2, cosine lr"
