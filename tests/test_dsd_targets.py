"""Why PD's landing target is not a separate candidate against DSD's drift (issue 16): on the model's own
trajectory, the x0̂ whose single step t → t'' lands where the student's step t → t' and the teacher's step
t' → t'' land is an affine mix of the two predictions,

    x0*  =  x0̂_s + c·(x0̂_T − x0̂_s),   c = (α'' − σ''·α'/σ') / (α'' − σ''·α/σ),

so with the target detached, ‖x0̂_s − sg(x0*)‖² = c²·‖x0̂_s − sg(x0̂_T)‖²: DSD's loss with a per-timestep weight
c², the same fixed points (x0̂ constant along the model's own trajectory) and so the same freedom to drift."""

import pytest
import torch

from dsd_core.ddim import ddim_step, x0_reaching
from dsd_core.schedule import NoiseSchedule

S = NoiseSchedule("linear")


@pytest.mark.parametrize("t, t_mid, t_next", [(999, 874, 749), (999, 749, 499), (499, 374, 249), (249, 124, -1)])
def test_the_landing_target_on_the_models_own_path_is_dsds_target_reweighted(t, t_mid, t_next):
    g = torch.Generator().manual_seed(0)
    x_t = torch.randn(4, 1, 8, 8, generator=g, dtype=torch.float64)
    x0_s = torch.rand(4, 1, 8, 8, generator=g, dtype=torch.float64) * 2 - 1  # the student's prediction at t
    x0_T = torch.rand(4, 1, 8, 8, generator=g, dtype=torch.float64) * 2 - 1  # the teacher's at t'
    tt, tm, tn = (torch.full((4,), v) for v in (t, t_mid, t_next))
    x_mid = ddim_step(x0_s, x_t, tt, tm, S, "x0").prev_sample
    x_next = ddim_step(x0_T, x_mid, tm, tn, S, "x0").prev_sample
    target = x0_reaching(x_t, x_next, tt, tn, S)
    (a, s), (a_m, s_m), (a_n, s_n) = (S.alpha_sigma(torch.tensor(v)) for v in (t, t_mid, t_next))
    c = float((a_n - s_n * a_m / s_m) / (a_n - s_n * a / s))
    torch.testing.assert_close(target, x0_s + c * (x0_T - x0_s), rtol=0, atol=1e-9)
    assert 0 < c <= 1 + 1e-12  # a damped DSD target: never beyond the teacher's prediction
