"""The Textual app's parts: screens, widgets, messages, and the torch-free helpers that start and follow runs.

Nothing here imports torch: runs and exports execute in `dsd` subprocesses and talk through files, so the
app starts fast and survives whatever happens to them.
"""
