"""The streaming edge: the Faust app and agents, topics, the ingest producer and source adapters.

Agents here only route (decode, call a detector or sink, send); the logic they call lives in
``detectors/`` and ``sinks/``, which never import this package.
"""
