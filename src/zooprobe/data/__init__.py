"""Labelled datasets as users have them: readers, the Dataset record and splits."""
