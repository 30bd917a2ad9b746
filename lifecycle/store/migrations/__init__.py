"""The schema, owned by alembic: one revision per change, applied by ``lifecycle db upgrade``
(and by the service at start). ``upgrade.py`` runs them, also on a database written before
alembic owned the schema (release 0.1.0), which it recognises and stamps first."""
