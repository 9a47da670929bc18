"""The options of `dsd train` and `dsd distill` and their config dataclasses stay in step: every option is a
config field (or one of the few that are not config: where a run goes, what it starts from, how it runs), and
a config built from the options holds their values."""

from __future__ import annotations

import dataclasses
import inspect

import pytest

from dsd_core.distill.config import DistillConfig
from dsd_core.train import TrainConfig
from dsd_tui.cli import distill as distill_cli
from dsd_tui.cli import train as train_cli
from dsd_tui.cli.common import config_from_options

COMMANDS = {"distill": (distill_cli, distill_cli.distill, DistillConfig),
            "train": (train_cli, train_cli.train, TrainConfig)}


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_option_is_a_config_field_or_known_not_to_be(name):
    module, command, config = COMMANDS[name]
    options = set(inspect.signature(command).parameters)
    fields = {f.name for f in dataclasses.fields(config)}
    renamed = {option: field for field, option in module.OPTION_OF_FIELD.items()}
    as_fields = {renamed.get(option, option) for option in options - module.NOT_CONFIG}
    assert as_fields <= fields, f"dsd {name} options without a config field: {sorted(as_fields - fields)}"
    assert module.NOT_CONFIG <= options


def test_distill_options_land_in_their_fields():
    defaults = {name: p.default.default for name, p in inspect.signature(distill_cli.distill).parameters.items()}
    assert config_from_options(DistillConfig, defaults, distill_cli.OPTION_OF_FIELD) == DistillConfig()
    changed = {**defaults, "ema": 0.9, "compile_net": True, "updates": 7, "lockstep": True, "model": "x"}
    cfg = config_from_options(DistillConfig, changed, distill_cli.OPTION_OF_FIELD)
    assert (cfg.ema_decay, cfg.compile, cfg.updates, cfg.lockstep) == (0.9, True, 7, True)


def test_train_options_land_in_their_fields():
    defaults = {name: p.default.default for name, p in inspect.signature(train_cli.train).parameters.items()}
    assert config_from_options(TrainConfig, defaults, train_cli.OPTION_OF_FIELD) == TrainConfig()
    cfg = config_from_options(TrainConfig, {**defaults, "ema": 0.5, "steps": 3, "sd_steps": 4},
                              train_cli.OPTION_OF_FIELD)
    assert (cfg.ema_decay, cfg.steps, cfg.sd_steps) == (0.5, 3, 4)


@pytest.mark.parametrize("value", [float("inf"), float("nan"), 0.0, -1e-4])
def test_a_learning_rate_that_is_not_a_finite_positive_number_is_refused_up_front(value):
    from dsd_core.distill.config import DistillConfig
    from dsd_core.errors import OptionError

    with pytest.raises(OptionError, match="finite number above 0"):
        DistillConfig(lr=value)


def test_a_distillation_batch_above_the_limit_is_refused_before_any_work():
    from dsd_core.distill.config import DistillConfig
    from dsd_core.errors import OptionError

    with pytest.raises(OptionError, match="above dsd's limit"):
        DistillConfig(batch=10**8)
