"""`make bench`: performance figures for this machine, each beside its baseline as a ratio."""
