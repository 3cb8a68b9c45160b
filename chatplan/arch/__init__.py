"""The nanochat generations chatplan plans and trains, each one value (see base.py)."""
