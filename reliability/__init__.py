"""`make reliability`: the reliability campaign against the real server on loopback.

gunicorn (and nginx in front where stated), PostgreSQL and a private Redis; writes
`reliability/results.json` and `reliability/results.md`. See `reliability/runner.py`.
"""
