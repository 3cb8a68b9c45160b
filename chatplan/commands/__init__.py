"""One small module per `chatplan` command; chatplan/cli.py registers them lazily."""
