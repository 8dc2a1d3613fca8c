"""Data files the evaluator ships: the fitted calibration of the expected-accuracy interval (``interval.json``)."""
