"""Subcommands of ``replicate``; see :mod:`replication.cli`."""
