"""Models: base models from folders, packages and the Hub, the heads, the multi-task model, code trust."""
