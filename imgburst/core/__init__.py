"""Shared foundations: settings, job store, blob store, recipes, Celery app. Imports nothing of ours."""
