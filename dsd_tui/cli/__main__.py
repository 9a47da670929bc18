"""`python -m dsd_tui.cli …` is `dsd …` (torchrun starts data-parallel runs this way)."""

from . import main

main()
