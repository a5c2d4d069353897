"""The composition root: settings from the environment, the runtime, `beast serve` and the CLI."""
