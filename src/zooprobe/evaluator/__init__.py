"""Transferability assessment: datasets, backbones and feature extraction."""
