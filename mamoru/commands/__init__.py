"""Sub-commands of the `mamoru` CLI, one module per concept."""
