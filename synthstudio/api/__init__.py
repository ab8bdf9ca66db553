"""The REST API under /api/v1/ (django-ninja) and the personal API tokens it accepts.

It calls the same services and selectors as the pages and checks access through ``annotation.permissions``; nothing in
``annotation`` or ``generation`` imports it.
"""
