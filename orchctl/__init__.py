"""orchctl: the command-line client of orchd."""
