"""dsd_tui: the front ends of dsd — the `dsd` command line (Typer) and the `dsd-tui` terminal app (Textual)."""
