"""The ``anycast`` command line: ``main`` parses and reports; each sub-command group is a module with ``register``."""
