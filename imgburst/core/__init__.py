"""Shared foundations: settings, job store, blob store, recipes, Celery app.

Imports nothing else of imgburst; api, worker and vk build on it.
"""
