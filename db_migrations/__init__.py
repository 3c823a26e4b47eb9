"""Alembic migrations of the template store, run from code by :mod:`enrollment.db`.

``retauth db upgrade|downgrade|current`` and the first use of a store drive these; no
``alembic.ini`` is needed (the script location is this package's directory).
"""
