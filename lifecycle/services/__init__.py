"""The use cases: intake, offboarding, joiner/mover provisioning, policy, the scheduled sweeps,
roster import. Services decide; the engine executes runs; the store persists."""
