"""FD, precision and recall of a few hundred samples during a run, where a feature extractor for the base
model's data exists (the digits classifier): the data-based view of quality beside the data-free agreement
check, to see whether the two move together. Optional (`--quality-fd N`): it costs more than the agreement
check, and most models have no such extractor. Its noises have their own seed, so it never changes the run."""

from __future__ import annotations

import torch

from ..checkpoint import LoadedModel
from ..errors import OptionError
from ..images import to_uint8
from ..sampling import sample

FD_SEED = 2**31 - 2  # not the run's seed, not the agreement check's
DIGITS = ("digits", "digits:train")


class FdCheck:
    """Digits-classifier scores of `num` samples at a step count against the digits training set."""

    def __init__(self, num: int, device: torch.device):
        from ..evaluate import digits_reference
        from ..features import DigitsFeatures

        self.num, self.device = num, device
        self.features = DigitsFeatures()
        self.reference = self.features(digits_reference().images)

    def score(self, loaded: LoadedModel, steps: int) -> dict[str, float]:
        from ..evaluate import scores

        images = to_uint8(sample(loaded, steps, num=self.num, seed=FD_SEED, device=self.device))
        s = scores(self.reference, self.features(images))
        return {"fd": float(s["fd"]), "precision": float(s["precision"]), "recall": float(s["recall"])}


def fd_check_for(num: int, base_data: str, num_classes: int | None, device: torch.device) -> FdCheck | None:
    """The check a run asked for (`num` samples, 0: none), or a one-line error where it cannot be made."""
    if not num:
        return None
    if base_data not in DIGITS or num_classes is not None:
        raise OptionError("{quality_fd} needs an unconditional model of the digits, the one data set with a feature "
                          "extractor here (this model's data: {data})", data=base_data or "not recorded")
    return FdCheck(num, device)
