"""The app's own widgets: the loss plot, the step-frequency histogram, digit grids, the run status line."""
