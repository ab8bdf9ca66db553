"""synthstudio: labelled text datasets from an LLM, with human review only where it pays."""
from synthstudio.celery import app as celery_app

__all__ = ["celery_app"]
