"""Experiment configs: `python launch.py --config=configs/<model>.py[:arg]`."""
