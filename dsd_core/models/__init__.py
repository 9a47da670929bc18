"""Denoising networks: the built-in compact UNet (adapters for other codebases' models live here too)."""

from .unet import UNet, UNetConfig, count_parameters

__all__ = ["UNet", "UNetConfig", "count_parameters"]
