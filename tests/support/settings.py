"""The settings the test suite runs with: the project's settings with DEBUG on, as for development.

pytest.ini names this module, so pytest-django loads it before any conftest. The variable also reaches the processes
the tests start (workers, `manage.py`), which read the same settings; a test that wants production passes DEBUG=false.
"""
import os

os.environ.setdefault("DEBUG", "true")

from synthstudio.settings import *  # noqa: E402, F403
