"""The pure domain of batchline: no Celery, Redis or SQLAlchemy imports live here."""
