"""Transferability assessment: checks, scores, the consensus and the recommendation."""
