"""The ``podvisor`` command line past tini mode: `main` parses and dispatches.

`commands` holds the control client's commands (ps, status, logs, exec, ...),
`output` their tables, `completion` the shell completion scripts.
"""
