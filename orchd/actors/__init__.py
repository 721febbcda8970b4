"""The actors of orchd: journal, supervisor, run, session."""
