"""Sub-commands of the `nas` CLI."""
