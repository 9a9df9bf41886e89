"""The one trainer and its checkpoints."""
