"""Free-text side of incident similarity: normalisation and hashed n-gram vectors.

Ticket text is full of tokens that differ between repeats of the same fault (numbers, host
names, ids, paths, addresses). They are masked first, so "disk full on db-07.corp.example
(/var/lib/pg, 97%)" and "Disk full on db-12.corp.example (/data, 99%)" become the same words.
Words and word bigrams are then hashed (``zlib.crc32``: stable across processes, unlike
``hash``) into a sparse, L2-normalised vector, the way scikit-learn's ``HashingVectorizer``
does but without its per-call overhead, which dominates when it is called once per incident.

>>> normalise_text("Disk full on db-07.corp.example (/var/lib/pg, 97%) ticket INC0012345")
'disk full on <host> <path> <num> ticket <id>'
>>> a = text_vector("Disk full on db-07.corp.example /var/lib/pg 97%")
>>> b = text_vector("disk FULL on db-12.corp.example /data 99%")
>>> round(cosine(a, b), 3)
1.0
>>> cosine(a, text_vector("printer out of toner")) < 0.2
True
"""

from __future__ import annotations

import math
import re
import zlib

#: dimensionality of the hashed space (2**20, as HashingVectorizer's default)
N_FEATURES = 1 << 20

_MASKS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b"), " <email> "),
    (re.compile(r"\b[a-z][a-z0-9+.-]*://\S+", re.I), " <url> "),
    (re.compile(r"\b(?:\d{1,3}\.){3}\d{1,3}(?::\d+)?\b"), " <ip> "),
    (re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b", re.I), " <id> "),
    (re.compile(r"(?<![\w/\\])(?:[a-z]:)?(?:[\\/][\w.$~-]+)+[\\/]?", re.I), " <path> "),
    (re.compile(r"\b(?:[a-z0-9-]+\.){2,}[a-z]{2,}\b", re.I), " <host> "),
    # ticket / change / KB ids (INC0012345, CHG0000404, KM0000553) and long hex ids
    (re.compile(r"\b[a-z]{1,5}-?\d{3,}\b|\b(?=[a-f]*\d)[0-9a-f]{10,}\b", re.I), " <id> "),
    (re.compile(r"\b[a-z]+[-_]?\d+[a-z0-9-]*\b", re.I), " <host> "),  # db-07, web12a: host-like
    (re.compile(r"\b\d+(?:[.,]\d+)*\s*%?"), " <num> "),
)
_TOKEN = re.compile(r"<[a-z]+>|[a-z][a-z']+")
_STOP = frozenset(
    "the a an and or of to in is it for with at by be this that from as are was on not".split()  # noqa: SIM905
)


def normalise_text(text: str) -> str:
    """Lower-case the text and mask numbers, hosts, ids, paths, IPs, URLs and e-mail addresses."""
    text = text.lower()
    for pattern, repl in _MASKS:
        text = pattern.sub(repl, text)
    return " ".join(_TOKEN.findall(text))


def tokens(text: str) -> list[str]:
    """Normalised words of ``text`` without stop words."""
    return [t for t in normalise_text(text).split() if t not in _STOP]


def text_vector(text: str, ngram_max: int = 2) -> dict[int, float]:
    """Hashed, L2-normalised bag of word n-grams (``1..ngram_max``) of the normalised text."""
    words = tokens(text)
    counts: dict[int, float] = {}
    for n in range(1, ngram_max + 1):
        for i in range(len(words) - n + 1):
            h = zlib.crc32(" ".join(words[i : i + n]).encode()) & (N_FEATURES - 1)
            counts[h] = counts.get(h, 0.0) + 1.0
    return _l2(counts)


def _l2(vec: dict[int, float]) -> dict[int, float]:
    norm = math.sqrt(sum(v * v for v in vec.values()))
    return {k: v / norm for k, v in vec.items()} if norm else {}


def cosine(a: dict[int, float], b: dict[int, float]) -> float:
    """Cosine similarity of two sparse vectors (0.0 when either is empty)."""
    if len(a) > len(b):
        a, b = b, a
    dot = sum(v * b.get(k, 0.0) for k, v in a.items())
    if not dot:
        return 0.0
    na = math.sqrt(sum(v * v for v in a.values()))
    nb = math.sqrt(sum(v * v for v in b.values()))
    return dot / (na * nb)


def add_to_centroid(centroid: dict[int, float], vec: dict[int, float], max_terms: int) -> None:
    """Add ``vec`` to a group's (unnormalised) centroid, keeping at most ``max_terms`` entries.

    Truncation keeps the largest weights, so a group's memory stays bounded however many
    incidents it links.
    """
    for k, v in vec.items():
        centroid[k] = centroid.get(k, 0.0) + v
    if len(centroid) > 2 * max_terms:
        keep = sorted(centroid.items(), key=lambda kv: kv[1], reverse=True)[:max_terms]
        centroid.clear()
        centroid.update(keep)


def add_terms(counter: dict[str, int], words: list[str], max_terms: int) -> None:
    """Count words for the "top terms" explanation, bounded like :func:`add_to_centroid`."""
    for w in words:
        if not w.startswith("<"):
            counter[w] = counter.get(w, 0) + 1
    if len(counter) > 2 * max_terms:
        keep = sorted(counter.items(), key=lambda kv: kv[1], reverse=True)[:max_terms]
        counter.clear()
        counter.update(keep)


def rare_keys(vec: dict[int, float], df: dict[int, int], k: int = 3) -> list[int]:
    """The ``k`` unigram/bigram hashes of ``vec`` seen in the fewest documents (blocking keys)."""
    return sorted(vec, key=lambda h: (df.get(h, 0), h))[:k]


def count_df(df: dict[int, int], vec: dict[int, float], max_terms: int = 200_000) -> dict[int, int]:
    """Count ``vec``'s terms as seen in one more document; bounded: beyond ``max_terms`` the counts
    are halved and the rarest forgotten (returns the dict to keep, maybe a new one)."""
    for h in vec:
        df[h] = df.get(h, 0) + 1
    if len(df) > max_terms:
        df = {h: n // 2 for h, n in df.items() if n > 1}
    return df
