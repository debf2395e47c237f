"""opsintel: streaming operations intelligence for IT service management.

This package holds what every layer shares: the canonical events (:mod:`opsintel.events`),
the settings (:mod:`opsintel.settings`) and the command line (:mod:`opsintel.cli`).
The layers themselves are the top-level packages ``streams`` (the Faust edge), ``detectors``
(pure detection logic), ``sinks`` (ClickHouse, Kafka and ITSM outputs) and ``dashboards``.
"""

__version__ = "0.1.0"
