"""`dsd distill`'s options and DistillConfig's fields stay in step: every option is a config field (or one of
the few that say where a run goes and how it runs), and a config built from the options holds their values."""

from __future__ import annotations

import dataclasses
import inspect

from dsd_core.distill.runner import DistillConfig
from dsd_tui.cli.distill import NOT_CONFIG, OPTION_OF_FIELD, config_from_options, distill


def test_every_option_is_a_config_field_or_says_where_the_run_goes():
    options = set(inspect.signature(distill).parameters)
    fields = {f.name for f in dataclasses.fields(DistillConfig)}
    as_fields = {next((f for f, o in OPTION_OF_FIELD.items() if o == name), name) for name in options - NOT_CONFIG}
    assert as_fields <= fields, f"options without a config field: {sorted(as_fields - fields)}"
    assert NOT_CONFIG <= options


def test_options_land_in_their_fields():
    defaults = {name: p.default.default for name, p in inspect.signature(distill).parameters.items()}
    assert config_from_options(defaults) == DistillConfig()  # the options' defaults are the config's
    changed = {**defaults, "ema": 0.9, "compile_net": True, "updates": 7, "lockstep": True, "model": "x"}
    cfg = config_from_options(changed)
    assert (cfg.ema_decay, cfg.compile, cfg.updates, cfg.lockstep) == (0.9, True, 7, True)
