"""The service catalogue: which business service a ticket hurts, and what an hour of it costs.

A YAML file (``OPSINTEL_SERVICE_CATALOG``; the demo uses ``deploy/catalog/services.example.yaml``)
lists services with their business unit, criticality, users, business hours (calendar, time zone,
holidays), cost per user-hour, customer-facing flag, revenue per hour and SLA targets per priority,
plus ordered rules that map ticket fields (``category``, ``assignment_group``, ``location``,
BPI's ``service`` = Service Component WBS, …) to services. Tickets no rule matches go to the
``default_service`` and are flagged ``mapped=False``.

Errors name the file and line (:class:`CatalogError`); :class:`CatalogFile` reloads the file
when it changes, keeping the last good catalogue on a bad edit. The formulas that use it are in
:mod:`opsintel.impact` and ``docs/impact.md``.
"""

from opsintel.catalog._catalog import Catalog, CatalogError, CatalogFile
from opsintel.catalog._hours import ALWAYS, BusinessHours
from opsintel.catalog._model import MATCHABLE_FIELDS, Mapping, Service, SlaTarget, level, parse_minutes

__all__ = [
    "ALWAYS",
    "MATCHABLE_FIELDS",
    "BusinessHours",
    "Catalog",
    "CatalogError",
    "CatalogFile",
    "Mapping",
    "Service",
    "SlaTarget",
    "level",
    "parse_minutes",
]
