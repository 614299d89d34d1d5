"""The `imgburst` command line: the program and its table of commands are in `app.py`;
each command (or family of commands) is a module of its own here."""
