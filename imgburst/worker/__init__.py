"""Celery workers: `tasks` (I/O around one job) and `imaging` (pure Pillow)."""
