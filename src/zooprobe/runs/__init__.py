"""The run store: every assessment and fine-tuning run, its typed records and its migrations."""
