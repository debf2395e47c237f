"""Loading, validating and querying the service catalogue."""

from __future__ import annotations

import logging
import operator
import os
import re
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from opsintel.catalog._hours import ALWAYS, BusinessHours
from opsintel.catalog._model import CatalogSpec, Mapping, Rule, Service, ServiceSpec, SlaTarget, level

log = logging.getLogger(__name__)

_CRITICALITY_BY_PRIORITY = {1: "critical", 2: "high", 3: "medium"}
#: ticket-field combinations whose mapping a catalogue keeps (about 1,400 in the ServiceNow log)
_MAX_MAPPED = 8_192


class CatalogError(ValueError):
    """The catalogue file is invalid; ``str()`` names the file, the line and what is wrong."""

    def __init__(self, path: str, line: int | None, message: str) -> None:
        self.path, self.line, self.message = path, line, message
        super().__init__(f"{path}:{line}: {message}" if line else f"{path}: {message}")


class Catalog:
    """The resolved catalogue: services, mapping rules, SLA targets, impact shares.

    Build it with :meth:`load` (a YAML file), :meth:`from_text` or :meth:`empty` (no file: every
    ticket maps to the default service).

    Examples
    --------
    >>> cat = Catalog.from_text('''
    ... calendars: {office: {timezone: Europe/Berlin}}
    ... services:
    ...   - {id: erp, business_unit: Finance, users: 300, business_hours: office, cost_per_user_hour: 60}
    ... rules:
    ...   - {service: erp, match: {category: [Category 45, Category 53]}}
    ... ''')
    >>> class T: source, category, priority, impact, urgency = "servicenow", "Category 53", "2 - High", "", ""
    >>> m = cat.map(T())
    >>> m.service.id, m.mapped, m.rule
    ('erp', True, 'rules[0]')
    >>> T.category = "Category 9"
    >>> (m := cat.map(T())).service.id, m.mapped, m.service.criticality
    ('unmapped', False, 'high')
    """

    def __init__(self, spec: CatalogSpec, origin: str = "<catalogue>") -> None:
        self.spec = spec
        self.origin = origin
        calendars: dict[str, BusinessHours] = {"24x7": ALWAYS}
        for name, cal in spec.calendars.items():
            calendars[name] = cal.build()
        self.services: dict[str, Service] = {}
        for s in spec.services:
            self.services[s.id] = self._service(s, calendars)
        self.default = self._service(spec.default_service, calendars)
        self.rules = tuple(
            Rule(i, self.services[r.service], r.source,
                 tuple((f, frozenset([v] if isinstance(v, str) else v)) for f, v in r.match.items()),
                 tuple((f, re.compile(p)) for f, p in r.match_regex.items()))
            for i, r in enumerate(spec.rules)
        )  # fmt: skip
        self._derived: dict[int, Service] = {}
        # map() depends on these ticket fields only: the ones the rules read, and the priority
        fields = {f for r in self.rules for f, _ in (*r.equals, *r.regex)} | {"priority"}
        if any(r.source for r in self.rules):
            fields.add("source")
        self._map_key = operator.attrgetter(*sorted(fields))
        self._mapped: dict[Any, Mapping] = {}

    def _service(self, s: ServiceSpec, calendars: dict[str, BusinessHours]) -> Service:
        sla = {**self.spec.sla_targets, **s.sla}
        return Service(s.id, s.name or s.id, s.business_unit, s.criticality, s.users, calendars[s.business_hours],
                       s.cost_per_user_hour, s.customer_facing, s.revenue_per_hour, sla)

    # --- constructors ------------------------------------------------------------------------------
    @classmethod
    def empty(cls) -> Catalog:
        return cls(CatalogSpec(), "<no catalogue>")

    @classmethod
    def from_text(cls, text: str, origin: str = "<catalogue>") -> Catalog:
        """Parse and validate YAML text; raises :class:`CatalogError` with the offending line."""
        try:
            node = yaml.compose(text, Loader=yaml.SafeLoader)
            data = yaml.safe_load(text)
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            raise CatalogError(origin, mark.line + 1 if mark else None, f"not valid YAML: {e}") from e
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise CatalogError(origin, 1, "the catalogue must be a mapping (services, rules, …)")
        try:
            spec = CatalogSpec.model_validate(data)
        except ValidationError as e:
            err = e.errors()[0]
            loc = tuple(err["loc"])
            where = ".".join(str(p) for p in loc) or "(top)"
            more = f" (and {e.error_count() - 1} more)" if e.error_count() > 1 else ""
            raise CatalogError(origin, _line(node, loc), f"{where}: {err['msg']}{more}") from e
        _cross_check(spec, node, origin)
        return cls(spec, origin)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Catalog:
        p = Path(path)
        try:
            text = p.read_text(encoding="utf-8")
        except OSError as e:
            raise CatalogError(str(p), None, f"cannot read the catalogue: {e.strerror or e}") from e
        return cls.from_text(text, str(p))

    @classmethod
    def from_settings(cls, settings: Any) -> Catalog:
        path = getattr(settings, "service_catalog", None)
        return cls.load(path) if path else cls.empty()

    # --- queries -----------------------------------------------------------------------------------
    def map(self, ticket: Any) -> Mapping:
        """The service of a ticket: the first matching rule, else the default service.

        For the default service the criticality follows the ticket's priority (1 critical, 2 high,
        3 medium, else low): the catalogue knows nothing better about an unmapped ticket.
        The answer is kept per combination of the fields the rules read (the catalogue never
        changes: :class:`CatalogFile` makes a new one when the file does).
        """
        key = self._map_key(ticket)
        mapping = self._mapped.get(key)
        if mapping is None:
            mapping = self._map(ticket)
            if len(self._mapped) >= _MAX_MAPPED:
                self._mapped.clear()
            self._mapped[key] = mapping
        return mapping

    def _map(self, ticket: Any) -> Mapping:
        for rule in self.rules:
            if rule.matches(ticket):
                return Mapping(rule.service, True, f"rules[{rule.index}]")
        return Mapping(self._default_for(level(ticket.priority)), False, "")

    def _default_for(self, priority: int) -> Service:
        svc = self._derived.get(priority)
        if svc is None:
            from dataclasses import replace

            svc = replace(self.default, criticality=_CRITICALITY_BY_PRIORITY.get(priority, "low"))
            self._derived[priority] = svc
        return svc

    def impact_share(self, ticket: Any) -> float:
        """Share of the service's users the ticket affects, from its impact level (else urgency,
        else priority); the lowest configured share when the ticket carries none of them."""
        shares = self.spec.impact_share
        for value in (ticket.impact, ticket.urgency, ticket.priority):
            n = level(value)
            if n in shares:
                return shares[n]
        return min(shares.values(), default=0.0)

    def sla_target(self, service: Service, priority: str) -> SlaTarget | None:
        return service.sla.get(level(priority))

    @property
    def currency(self) -> str:
        return self.spec.currency


def _line(node: yaml.Node | None, loc: Sequence[Any]) -> int | None:
    """1-based line of the YAML node at ``loc`` (the deepest existing parent if it is missing)."""
    if node is None:
        return None
    line = node.start_mark.line + 1
    for part in loc:
        child = None
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                if str(k.value) == str(part):
                    child = v
                    line = k.start_mark.line + 1
                    break
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            child = node.value[part]
            line = child.start_mark.line + 1
        if child is None:
            return line
        node = child
    return line


def _cross_check(spec: CatalogSpec, node: yaml.Node | None, origin: str) -> None:
    """References between sections: unique ids, known calendars, rules naming known services."""
    seen: set[str] = set()
    for i, s in enumerate([*spec.services, spec.default_service]):
        loc: tuple[Any, ...] = ("services", i) if i < len(spec.services) else ("default_service",)
        if s.id in seen:
            raise CatalogError(origin, _line(node, (*loc, "id")), f"duplicate service id {s.id!r}")
        seen.add(s.id)
        if s.business_hours != "24x7" and s.business_hours not in spec.calendars:
            raise CatalogError(origin, _line(node, (*loc, "business_hours")),
                               f"unknown calendar {s.business_hours!r} (define it under calendars, or use 24x7)")
    for name, cal in spec.calendars.items():
        try:
            cal.build()
        except ValueError as e:
            raise CatalogError(origin, _line(node, ("calendars", name)), f"calendars.{name}: {e}") from e
    for i, r in enumerate(spec.rules):
        if r.service not in seen or r.service == spec.default_service.id:
            raise CatalogError(origin, _line(node, ("rules", i, "service")),
                               f"rules[{i}]: unknown service {r.service!r}")
        if not r.match and not r.match_regex:
            raise CatalogError(origin, _line(node, ("rules", i)), f"rules[{i}]: needs match or match_regex")


class CatalogFile:
    """A catalogue file that reloads itself when it changes (checked at most every ``interval`` s).

    :meth:`current` never raises after the first load: an invalid edit is logged and the last good
    catalogue stays in use, so a typo cannot stop the worker.
    """

    def __init__(self, path: str | os.PathLike[str], interval: float = 5.0) -> None:
        import time

        self.path = Path(path)
        self.interval = interval
        self._clock = time.monotonic
        self._lock = threading.Lock()
        self._stamp = self._stat()
        self._catalog = Catalog.load(self.path)
        self._checked = self._clock()
        self.last_error: CatalogError | None = None

    def _stat(self) -> tuple[int, int]:
        try:
            st = self.path.stat()
        except OSError:
            return (0, 0)
        return (st.st_mtime_ns, st.st_size)

    def current(self) -> Catalog:
        now = self._clock()
        if now - self._checked < self.interval:
            return self._catalog
        with self._lock:
            self._checked = now
            stamp = self._stat()
            if stamp != self._stamp:
                self._stamp = stamp
                try:
                    self._catalog = Catalog.load(self.path)
                    self.last_error = None
                    log.info("service catalogue reloaded from %s", self.path)
                except CatalogError as e:
                    self.last_error = e
                    log.error("service catalogue not reloaded, keeping the previous one: %s", e)
        return self._catalog
