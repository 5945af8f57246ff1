"""Configuration package and shared infrastructure of the distribution operations portal."""

from portal.celery import app as celery_app

__all__ = ["celery_app"]
