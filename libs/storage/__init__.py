"""Job and instance state in SQL (SQLite by default, PostgreSQL via DATABASE_URL).

The queue carries only ids; everything a step needs to resume lives here, so losing Redis loses nothing.
"""
