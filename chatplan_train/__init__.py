"""chatplan_train: the bundled trainer for plan.json (torch). See docs/trainer.md."""
