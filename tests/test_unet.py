import pytest
import torch

from dsd_core.errors import DsdError
from dsd_core.models import UNet, UNetConfig, count_parameters


@pytest.mark.parametrize(
    "cfg",
    [
        UNetConfig(),
        UNetConfig(image_size=16, in_channels=3, base_channels=16, channel_mults=(1, 2, 2), num_groups=8),
        UNetConfig(image_size=8, base_channels=16, channel_mults=(1, 2), num_res_blocks=2, attention_levels=(),
                   num_groups=8),
    ],
)
def test_output_shape_matches_input(cfg):
    model = UNet(cfg)
    x = torch.randn(3, cfg.in_channels, cfg.image_size, cfg.image_size)
    assert model(x, torch.tensor([0, 500, 999])).shape == x.shape


def test_default_size_is_compact():
    assert 0.5e6 < count_parameters(UNet(UNetConfig())) < 1.5e6


def test_per_sample_timesteps_change_the_output():
    torch.manual_seed(0)
    model = UNet(UNetConfig(base_channels=16, num_groups=8))
    for p in model.parameters():  # zero-initialised output layers would hide the dependence on t
        torch.nn.init.normal_(p, std=0.05)
    x = torch.randn(1, 1, 8, 8).expand(2, -1, -1, -1)
    out = model(x, torch.tensor([10, 900]))
    assert not torch.allclose(out[0], out[1])


def test_class_embedding_with_null_class():
    cfg = UNetConfig(base_channels=16, num_groups=8, num_classes=10)
    model = UNet(cfg)
    assert model.class_emb.num_embeddings == 11  # ten classes + the null class
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.05)
    x, t = torch.randn(2, 1, 8, 8), torch.tensor([100, 100])
    null = model(x, t)
    torch.testing.assert_close(null, model(x, t, torch.tensor([10, 10])))
    assert not torch.allclose(null, model(x, t, torch.tensor([3, 3])))


def test_config_round_trip_and_validation():
    cfg = UNetConfig(channel_mults=(1, 2), attention_levels=(1,), num_classes=10)
    assert UNetConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(DsdError, match="divisible"):
        UNetConfig(image_size=6)
    with pytest.raises(DsdError, match="unknown UNet config"):
        UNetConfig.from_dict({**cfg.to_dict(), "depth": 3})
