"""`make bench`: Nudge's cost and speed figures, each a ratio measured in one run."""
