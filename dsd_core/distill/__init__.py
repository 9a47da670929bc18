"""Distillation: the DSD update, step schedulers and the step-frequency histogram, and the run loop."""
