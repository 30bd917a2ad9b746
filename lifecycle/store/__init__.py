"""Storage behind ports: ``ports`` declares what the engine and services use; ``sql``
implements it (imported by the composition root only)."""
