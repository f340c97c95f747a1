"""The training loop that every engine runs: compiled steps, schedule, hooks, stopping."""
