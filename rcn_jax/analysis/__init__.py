"""Analysis of trained runs: predictions on new frames, class activation maps, run reports."""
