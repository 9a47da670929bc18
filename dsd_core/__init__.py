"""dsd_core: the engine of dsd — schedules, DDIM, models, training, checkpoints (no UI code here)."""

__version__ = "0.1.0"
