"""One module per screen: setup (home), run, export, sampler, and the help and quit dialogs."""
