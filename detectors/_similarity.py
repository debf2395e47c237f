"""Incident similarity over categorical context, plus free text when the source has it.

An incident's context is the tuple of :data:`FIELDS` (empty string = the source does not have
it). Similarity to a group is the weighted share of agreeing fields, counted over the fields
at least one side has (a field neither side has says nothing; a field only one side has
counts as a disagreement), with the cosine of the hashed text vectors added as one more
weighted "field" when both sides have text. So coded data (the ServiceNow log, BPI 2014) and
text-rich data use the same rule, and text-free data still works.

Default weights, argued from the two logs: a configuration item is the most specific cause
(BPI's "CI Name (aff)", 3,019 values); the symptom is the next most specific coded field
(ServiceNow ``u_symptom``: 502 values, within a subcategory); subcategory narrows the category;
category / service / location / assignment group are broad (57-274 values each, thousands of
incidents each) and only confirm. A service that merely repeats the category (ServiceNow's
service *is* its category) is not counted twice. With these weights and the default threshold
0.7 on the ServiceNow fields (category, subcategory, symptom, location, group: weight 8): the
same category + subcategory + symptom at another site and group still groups (6/8 = 0.75),
another symptom in the same subcategory does not, even at the same site and group (5/8).

>>> weights = default_weights()
>>> a = ("Category 55", "", "Category 55", "Subcategory 170", "Symptom 72", "Location 143", "Group 56")
>>> b = ("Category 55", "", "Category 55", "Subcategory 170", "Symptom 72", "Location 9", "Group 3")
>>> round(field_similarity(a, b, weights)[0], 3)
0.75
>>> c = a[:4] + ("Symptom 9",) + a[5:]
>>> round(field_similarity(a, c, weights)[0], 3)
0.625
"""

from __future__ import annotations

import operator
from collections.abc import Mapping

from opsintel.events import TicketEvent

#: the context fields compared, in this order, as named on :class:`~opsintel.events.TicketEvent`
FIELDS: tuple[str, ...] = ("service", "ci", "category", "subcategory", "symptom", "location", "assignment_group")

_DEFAULT_WEIGHTS: dict[str, float] = {
    "service": 1.0,
    "ci": 4.0,
    "category": 1.0,
    "subcategory": 2.0,
    "symptom": 3.0,
    "location": 1.0,
    "assignment_group": 1.0,
}

#: values that mean "missing" in the sources (ServiceNow ``?``, BPI ``#N/B``) if an adapter kept them
_MISSING = frozenset({"", "?", "#N/B", "#MULTIVALUE", "-", "n/a", "N/A", "unknown", "Unknown"})


def default_weights() -> tuple[float, ...]:
    """The default field weights, in :data:`FIELDS` order."""
    return tuple(_DEFAULT_WEIGHTS[f] for f in FIELDS)


def weights_from(mapping: Mapping[str, float] | None) -> tuple[float, ...]:
    """Field weights from a partial mapping (unnamed fields keep their default; 0 disables one)."""
    merged = dict(_DEFAULT_WEIGHTS)
    for name, w in (mapping or {}).items():
        if name not in merged:
            raise ValueError(f"unknown similarity field {name!r}; known: {', '.join(FIELDS)}")
        if w < 0:
            raise ValueError(f"weight of {name!r} must be >= 0")
        merged[name] = float(w)
    return tuple(merged[f] for f in FIELDS)


_MARKERS = _MISSING - {""}
_context = operator.attrgetter(*FIELDS)


def context_of(event: TicketEvent) -> tuple[str, ...]:
    """The incident's context tuple (missing-value markers normalised to ``""``)."""
    values: tuple[str, ...] = _context(event)
    if _MARKERS.isdisjoint(values):  # the common case: nothing to normalise
        return values
    return tuple("" if v in _MISSING else v for v in values)


def field_similarity(x: tuple[str, ...], rep: tuple[str, ...], weights: tuple[float, ...]) -> tuple[float, float]:
    """Weighted agreement of two context tuples: ``(similarity, weight compared)``.

    ``weight compared`` is the denominator; it lets the caller blend in the text similarity.
    """
    # a service that is just the category on both sides (the ServiceNow adapter's default) carries
    # no signal of its own: counting it would let category agreement weigh double
    num = den = 0.0
    w0, w1, w2, w3, w4, w5, w6 = weights
    a, b = x[0], rep[0]
    if (a or b) and not (a == x[2] and b == rep[2]):
        den = w0
        num = den if a == b else 0.0
    # the hot spot of grouping (called for every candidate group): the six other fields of
    # FIELDS unrolled, ~30 % faster than a loop; each field: agreeing on a value counts on both
    # sides, a value on one side only counts as a disagreement, missing on both says nothing
    a, b = x[1], rep[1]
    if a == b:
        if a:
            den += w1
            num += w1
    elif a or b:
        den += w1
    a, b = x[2], rep[2]
    if a == b:
        if a:
            den += w2
            num += w2
    elif a or b:
        den += w2
    a, b = x[3], rep[3]
    if a == b:
        if a:
            den += w3
            num += w3
    elif a or b:
        den += w3
    a, b = x[4], rep[4]
    if a == b:
        if a:
            den += w4
            num += w4
    elif a or b:
        den += w4
    a, b = x[5], rep[5]
    if a == b:
        if a:
            den += w5
            num += w5
    elif a or b:
        den += w5
    a, b = x[6], rep[6]
    if a == b:
        if a:
            den += w6
            num += w6
    elif a or b:
        den += w6
    return (num / den if den else 0.0), den


def signature(x: tuple[str, ...]) -> str:
    r"""Key of the background rate a group is judged against: its coded cause fields.

    Location and assignment group are left out: a group joins incidents across them, so its
    rate must count them too. Empty when the incident has no coded field (text-only data).

    >>> signature(("Category 55", "", "Category 55", "Subcategory 170", "Symptom 72", "Location 9", "Group 3"))
    'Category 55\x1f\x1fCategory 55\x1fSubcategory 170\x1fSymptom 72'
    """
    return "\x1f".join(x[:5]) if any(x[:5]) else ""


def blend(field_sim: float, field_weight: float, text_sim: float | None, text_weight: float) -> float:
    """Blend field and text similarity; ``text_sim`` is ``None`` when either side has no text.

    >>> blend(1.0, 6.0, None, 4.0)
    1.0
    >>> blend(0.5, 6.0, 1.0, 4.0)
    0.7
    """
    if text_sim is None or text_weight <= 0:
        return field_sim
    den = field_weight + text_weight
    return (field_sim * field_weight + text_sim * text_weight) / den if den else 0.0


def blocking_keys(x: tuple[str, ...], text_keys: list[int]) -> list[str]:
    """Keys under which a group is indexed and an incident looks for candidate groups.

    Two incidents can only be compared when they share a key, which keeps the candidate set
    small; the keys are chosen so that any pair scoring above a sensible threshold shares one:
    the CI, the symptom within its category, the subcategory within its service and category,
    the rarest text n-grams, and the service + category as the last resort for sparse data.
    """
    service, ci, category, subcategory, symptom, _location, _group = x
    keys = []
    if ci:
        keys.append("c\x1f" + ci)
    if symptom:
        keys.append("y\x1f" + category + "\x1f" + symptom)
    if subcategory:
        keys.append("s\x1f" + service + "\x1f" + category + "\x1f" + subcategory)
    keys.extend("t\x1f" + str(h) for h in text_keys)
    if not keys and (service or category):
        keys.append("v\x1f" + service + "\x1f" + category)
    return keys


def shared_attributes(
    rep: tuple[str, ...], matches: list[int], members: int, min_share: float = 0.5
) -> tuple[dict[str, str], dict[str, float]]:
    """The group's values that at least ``min_share`` of its members carry, and their shares."""
    shared: dict[str, str] = {}
    share: dict[str, float] = {}
    for name, value, n in zip(FIELDS, rep, matches, strict=True):
        if value and members and n / members >= min_share:
            shared[name] = value
            share[name] = round(n / members, 3)
    return shared, share
