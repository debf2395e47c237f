"""Prometheus Alertmanager webhook payloads (version 4 JSON) → :class:`MonitoringEvent`.

One event per element of ``alerts``. Mapping a caller may rely on:

* ``status`` is the alert's own status (the group's if the alert has none);
* ``starts_at`` / ``ends_at`` as sent; an ``endsAt`` of ``0001-01-01T00:00:00Z`` (Go's zero time)
  or none means "not ended" → ``None``. Nanosecond precision is truncated to microseconds;
* ``event_time`` is ``endsAt`` for a resolved alert, ``startsAt`` for a firing one. A resolved
  alert that carries no ``endsAt`` (seen in real payloads) falls back to ``startsAt`` and keeps
  ``ends_at=None``: the resolution time is unknown, not invented;
* ``fingerprint`` is the alert's, else :func:`label_fingerprint` of its labels;
* ``name`` / ``severity`` / ``ci`` / ``service`` are the ``alertname`` / ``severity`` /
  ``instance`` / ``service`` labels (empty if absent); ``summary`` is the ``summary`` annotation,
  else the ``summary`` label;
* ``event_id`` = ``alertmanager:<fingerprint>:<status>:<startsAt>``, so a re-sent notification
  maps to the same id.

A payload that is not JSON or has no ``alerts`` list is rejected as a whole; one bad alert in an
otherwise good payload rejects only that alert. ``truncatedAlerts`` (alerts Alertmanager dropped
for ``max_alerts``) cannot be recovered from the payload.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec

from opsintel.events import AlertStatus, Event, MonitoringEvent

from ._base import AdapterOutput, Rejected, open_text

SOURCE = "alertmanager"
_GO_ZERO_TIME = "0001-01-01T00:00:00Z"
_FNV_OFFSET, _FNV_PRIME, _MASK = 0xCBF29CE484222325, 0x100000001B3, 0xFFFFFFFFFFFFFFFF


class AlertError(ValueError):
    """An alert that cannot be mapped; ``str(e)`` is the reason code and message."""


def label_fingerprint(labels: Mapping[str, str]) -> str:
    """Fingerprint of a label set: 64-bit FNV-1a over the sorted ``name\\xffvalue\\xff`` pairs.

    This is the algorithm of Prometheus' ``model.LabelSet.Fingerprint`` that Alertmanager uses for
    an alert's ``fingerprint``; on the sample payloads it reproduces every fingerprint Alertmanager
    sent. Used only when an alert carries none, so it is a reconstruction, not a value Alertmanager
    sent.

    >>> label_fingerprint({"alertname": "InstanceDown", "instance": "minio:9000"})
    '6fe33c9c13bd03f9'
    >>> label_fingerprint({"b": "2", "a": "1"}) == label_fingerprint({"a": "1", "b": "2"})
    True
    """
    h = _FNV_OFFSET
    for name in sorted(labels):
        for byte in b"%s\xff%s\xff" % (name.encode(), str(labels[name]).encode()):
            h = ((h ^ byte) * _FNV_PRIME) & _MASK
    return f"{h:016x}"


def _time(alert: Mapping[str, Any], key: str, *, required: bool) -> datetime | None:
    value = alert.get(key)
    if value in (None, "", _GO_ZERO_TIME):
        if required:
            raise AlertError(f"missing_field: {key}")
        return None
    if not isinstance(value, str):
        raise AlertError(f"bad_timestamp: {key}: {value!r}")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise AlertError(f"bad_timestamp: {key}: {value!r}") from None
    if parsed.tzinfo is None:
        raise AlertError(f"bad_timestamp: {key}: no zone in {value!r}")
    return parsed.astimezone(UTC)


def _string_map(alert: Mapping[str, Any], key: str) -> dict[str, str]:
    value = alert.get(key) or {}
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise AlertError(f"validation: `{key}` must be an object of strings")
    return value


def alert_event(alert: Any, *, group_status: str = "") -> MonitoringEvent:
    """Map one element of a payload's ``alerts``; raises :class:`AlertError` if it cannot be mapped.

    >>> ev = alert_event({"status": "firing", "labels": {"alertname": "Down", "instance": "db1"},
    ...                   "startsAt": "2021-12-07T14:26:49.066423235Z", "endsAt": "0001-01-01T00:00:00Z",
    ...                   "fingerprint": "3a14bc2cceb179a4"})
    >>> ev.name, ev.ci, ev.ends_at, ev.event_time.isoformat()
    ('Down', 'db1', None, '2021-12-07T14:26:49.066423+00:00')
    """
    if not isinstance(alert, dict):
        raise AlertError(f"validation: an alert must be an object, got {type(alert).__name__}")
    labels = _string_map(alert, "labels")
    annotations = _string_map(alert, "annotations")
    status = alert.get("status") or group_status
    if status not in (AlertStatus.FIRING.value, AlertStatus.RESOLVED.value):
        raise AlertError(f"validation: status must be firing or resolved, got {status!r}")
    starts_at = _time(alert, "startsAt", required=True)
    assert starts_at is not None
    ends_at = _time(alert, "endsAt", required=False)
    fingerprint = alert.get("fingerprint") or label_fingerprint(labels)
    if not isinstance(fingerprint, str):
        raise AlertError(f"validation: fingerprint must be a string, got {fingerprint!r}")
    event_time = (ends_at or starts_at) if status == AlertStatus.RESOLVED else starts_at
    generator_url = alert.get("generatorURL") or ""
    try:
        return MonitoringEvent(
            event_id=f"{SOURCE}:{fingerprint}:{status}:{starts_at.isoformat()}",
            source=SOURCE,
            event_time=event_time,
            status=AlertStatus(status),
            fingerprint=fingerprint,
            name=labels.get("alertname", ""),
            starts_at=starts_at,
            ends_at=ends_at,
            service=labels.get("service", ""),
            ci=labels.get("instance", ""),
            severity=labels.get("severity", ""),
            summary=annotations.get("summary") or labels.get("summary", ""),
            generator_url=generator_url if isinstance(generator_url, str) else "",
            labels=labels,
            annotations=annotations,
        )
    except ValueError as e:
        message = str(e)
        code = "bad_timestamp" if "out of range" in message or "timezone" in message else "validation"
        raise AlertError(f"{code}: {message}") from None


def parse_alertmanager_payload(body: bytes, *, source: str = "webhook") -> list[Event | Rejected]:
    """Turn one webhook POST body into events, one per alert, rejecting what cannot be mapped.

    ``source`` names the input in a :class:`Rejected` (``"<source>"`` for the payload,
    ``"<source>:alerts[i]"`` for one alert, whose ``raw`` is that alert re-encoded as JSON).

    >>> out = parse_alertmanager_payload(b'{"version": "4", "status": "firing", "alerts": ['
    ...     b'{"labels": {"alertname": "Down"}, "startsAt": "2019-09-27T16:27:56Z"}, {"labels": 1}]}')
    >>> out[0].fingerprint, out[1].source, out[1].reason
    ('6accfd3d0992a914', 'webhook:alerts[1]', 'validation: `labels` must be an object of strings')
    >>> parse_alertmanager_payload(b'{"alerts": ')[0].reason
    'bad_json: ...'
    """
    try:
        payload = msgspec.json.decode(body)
    except msgspec.DecodeError as e:
        return [Rejected(source, f"bad_json: {e}", body)]
    if not isinstance(payload, dict) or not isinstance(payload.get("alerts"), list):
        return [Rejected(source, "validation: not an Alertmanager webhook payload (no `alerts` list)", body)]
    version = payload.get("version")
    if version not in (None, "4"):
        return [Rejected(source, f"validation: unsupported webhook version {version!r} (expected '4')", body)]
    status = payload.get("status")
    group_status = status if isinstance(status, str) else ""
    out: list[Event | Rejected] = []
    for i, alert in enumerate(payload["alerts"]):
        try:
            out.append(alert_event(alert, group_status=group_status))
        except AlertError as e:
            out.append(Rejected(f"{source}:alerts[{i}]", str(e), msgspec.json.encode(alert)))
    return out


def read_alertmanager(path: str | Path, *, tz: str = "UTC") -> AdapterOutput:
    """Read a file holding one payload (``.json``, pretty-printed or not) or JSON lines of payloads.

    ``tz`` is accepted for a uniform reader signature and ignored: webhook timestamps carry a zone.
    A file is JSON lines when its first non-blank line is a complete JSON document and more lines
    follow; blank lines are skipped.

    >>> sample = Path(__file__).parents[2] / "tests" / "data" / "alertmanager" / "alerts2.json"
    >>> [e.fingerprint for e in read_alertmanager(sample)][:2]
    ['2c74f4ec6b57d59e', 'e38f5c82f3ac3db2']
    """
    name = Path(path).name
    with open_text(path) as f:
        content = f.read()
    # JSON lines end at "\n" only: str.splitlines would also cut at U+2028, U+0085, \x1c … which
    # are legal unescaped inside a JSON string, and lose the whole payload that holds one
    lines = content.split("\n")
    numbered = [(n, line) for n, line in enumerate(lines, 1) if line.strip()]
    if len(numbered) > 1 and _is_json(numbered[0][1]):
        for n, line in numbered:
            yield from parse_alertmanager_payload(line.encode(), source=f"{name}:{n}")
    elif numbered:
        yield from parse_alertmanager_payload(content.encode(), source=name)


def _is_json(line: str) -> bool:
    try:
        msgspec.json.decode(line)
    except msgspec.DecodeError:
        return False
    return True
