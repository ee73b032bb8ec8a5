"""The operators' tools: the ``tokenbank`` command line (admin/cli.py, ``python -m admin.cli``).

Argument parsing and printing only; every action is a function of core.services.operations.
It publishes through broker/ and imports neither web/ nor worker/.
"""
