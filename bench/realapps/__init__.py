"""Real applications for bench/run.py's django and flask rows: pages where the application
does the work users' applications do, so that a server's lead is measured on them too.

- ``realapps.django_site:application``: the Django tutorial's polls index, a template that
  loops over the 25 latest questions and their choices, read through the ORM from SQLite;
- ``realapps.flask_json:app``: a Flask endpoint serialising 300 records to JSON.

Each process makes its own SQLite database in a temporary directory at import, so every
server (and every worker process) does the same work.
"""
