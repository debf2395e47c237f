"""Outputs: ClickHouse tables (``sinks.clickhouse``), the dead-letter record format, ITSM pushes.

Sinks never import ``streams``: the Faust agents call them, and so do replays and tests.
"""
