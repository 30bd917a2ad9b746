"""The run engine: one executor (claim, lease, heartbeat, fencing, the step runner), the
actions it runs, and the run kinds as data (``kinds.RunSpec``)."""
