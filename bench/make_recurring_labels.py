"""Make labelled recurring-incident data from BPI 2014 for ``opsintel eval recurring --labels``.

Label = the known error an incident was resolved with on the CI it affected: incidents sharing
``KM number`` (the knowledge article used) **and** ``CI Name (aff)`` get one ``group_id``
(``<CI>|<KM>``). Incidents without a KM number are left out (unlabelled). This is a proxy for real
problem links (BPI has no problem ids), and a fair one for the detector because it does not use the
KM number for grouping (only for the "suggested knowledge" evidence).

    .venv/bin/python bench/make_recurring_labels.py \\
        ../shared/data/bpic2014/Detail_Incident.csv.gz var/bpic_labels.csv
"""

from __future__ import annotations

import csv
import gzip
import io
import sys
from collections import Counter
from pathlib import Path

MISSING = {"", "#N/B", "#MULTIVALUE"}


def main(src: str, dst: str) -> None:
    raw = gzip.open(src, "rb") if src.endswith(".gz") else open(src, "rb")  # noqa: SIM115
    rows = csv.DictReader(io.TextIOWrapper(raw, encoding="utf-8", errors="replace"), delimiter=";")
    labels: dict[str, str] = {}
    for row in rows:
        incident = (row.get("Incident ID") or "").strip()
        km = (row.get("KM number") or "").strip()
        ci = (row.get("CI Name (aff)") or "").strip()
        if incident and km not in MISSING and ci not in MISSING:
            labels[incident] = f"{ci}|{km}"
    Path(dst).parent.mkdir(parents=True, exist_ok=True)
    with open(dst, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["incident_id", "group_id"])
        for incident, group in sorted(labels.items()):
            w.writerow([incident, group])
    sizes = Counter(labels.values())
    print(
        f"{len(labels)} labelled incidents, {len(sizes)} groups, "
        f"{sum(1 for n in sizes.values() if n >= 3)} groups with >= 3 incidents -> {dst}"
    )


if __name__ == "__main__":
    main(*sys.argv[1:3])
