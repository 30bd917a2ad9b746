"""One router per audience; each module's ``router(service, auth)`` builds its routes."""
