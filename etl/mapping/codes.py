"""Governed code tables (`mappings/codes/*.yaml`) and vectorized lookups against them.

A code table maps the many spellings two systems use for one thing (department
codes and names, status codes, supplier codes) to one unified code. Each entry
may carry synonyms and a validity period, so that reorganisations are dated.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable
from datetime import date, timedelta
from functools import cached_property
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class CodeEntry(BaseModel):
    """One unified code with the names and synonyms that map to it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    code: str
    name: str | None = None
    synonyms: list[str] = Field(default_factory=list)
    valid_from: date | None = None
    valid_to: date | None = None
    attributes: dict[str, Any] = Field(default_factory=dict)

    @field_validator("code", "name", mode="before")
    @classmethod
    def _as_text(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int | float) else value

    @field_validator("code")
    @classmethod
    def _code_not_empty(cls, value: str) -> str:
        # an empty code would be published as the unified value of every spelling of the entry
        if not value.strip():
            raise ValueError("the code is empty; give the entry its unified code, e.g. code: D0101")
        return value

    @field_validator("synonyms", mode="before")
    @classmethod
    def _synonyms_as_text(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [str(v) if isinstance(v, int | float) else v for v in value]
        return value

    @model_validator(mode="after")
    def _period_in_order(self) -> CodeEntry:
        if self.valid_from and self.valid_to and self.valid_to < self.valid_from:
            raise ValueError(f"valid_to {self.valid_to} is before valid_from {self.valid_from}; swap them")
        return self

    def valid_on(self, day: date) -> bool:
        """True when the entry is in force on `day`."""
        return (self.valid_from is None or self.valid_from <= day) and (self.valid_to is None or day <= self.valid_to)


def normalize_code(value: str) -> str:
    """The comparison form of a code or name: NFKC, whitespace removed, case-folded."""
    return "".join(unicodedata.normalize("NFKC", value).split()).casefold()


def _overlap(a: CodeEntry, b: CodeEntry) -> bool:
    """True when the validity periods of `a` and `b` share a day (an open end is unbounded)."""
    return (a.valid_from is None or b.valid_to is None or a.valid_from <= b.valid_to) and (
        b.valid_from is None or a.valid_to is None or b.valid_from <= a.valid_to
    )


def _period(entry: CodeEntry) -> str:
    if entry.valid_from and entry.valid_to:
        return f"from {entry.valid_from} to {entry.valid_to}"
    if entry.valid_from:
        return f"from {entry.valid_from}"
    return f"until {entry.valid_to}" if entry.valid_to else "always"


def _closing_fix(first: tuple[int, CodeEntry], second: tuple[int, CodeEntry]) -> str:
    """How to end the overlap of two entries: close the one that starts first the day before the other starts."""
    (i, a), (j, b) = first, second
    if b.valid_from and (a.valid_from is None or a.valid_from < b.valid_from):
        return f"close entries[{i}] with valid_to: {b.valid_from - timedelta(days=1)}"
    if a.valid_from and (b.valid_from is None or b.valid_from < a.valid_from):
        return f"close entries[{j}] with valid_to: {a.valid_from - timedelta(days=1)}"
    return "give the entries non-overlapping valid_from/valid_to"


def spelling_conflicts(entries: Iterable[tuple[int, CodeEntry]]) -> list[tuple[int, tuple[str | int, ...], str]]:
    """Every spelling that maps to two codes, and every code given two names, on overlapping dates:
    (entry index, key path in the entry, message), located at the second appearance. `entries` are (index in
    the file, entry) pairs, so that a caller can check the entries that are valid while others are not."""
    conflicts: list[tuple[int, tuple[str | int, ...], str]] = []
    seen: dict[str, list[tuple[int, CodeEntry]]] = {}
    names: dict[str, list[tuple[int, CodeEntry]]] = {}
    for index, entry in entries:
        for j, other in names.get(entry.code, []):
            if other.name != entry.name and _overlap(other, entry):
                message = (
                    f"code '{entry.code}' already has entry entries[{j}] (name {other.name or '(none)'}) valid on "
                    f"the same dates as this one (name {entry.name or '(none)'}); one code gives one name: merge "
                    "the entries, or date them with non-overlapping valid_from/valid_to"
                )
                conflicts.append((index, ("name",) if entry.name else ("code",), message))
                break
        names.setdefault(entry.code, []).append((index, entry))
        spellings: list[tuple[tuple[str | int, ...], str]] = [
            (("code",), entry.code),
            *([(("name",), entry.name)] if entry.name else []),
            *((("synonyms", j), synonym) for j, synonym in enumerate(entry.synonyms)),
        ]
        for where, spelling in spellings:
            earlier = seen.setdefault(normalize_code(spelling), [])
            for j, other in earlier:
                if other.code == entry.code or not _overlap(other, entry):
                    continue
                if other.valid_from == entry.valid_from and other.valid_to == entry.valid_to:
                    message = (
                        f"'{spelling}' maps to both '{other.code}' and '{entry.code}'; keep it under one entry "
                        "or give the entries non-overlapping valid_from/valid_to"
                    )
                else:
                    message = (
                        f"'{spelling}' maps to both '{other.code}' (entries[{j}], {_period(other)}) and "
                        f"'{entry.code}' (entries[{index}], {_period(entry)}) on overlapping dates; "
                        f"{_closing_fix((j, other), (index, entry))}"
                    )
                conflicts.append((index, where, message))
                break
            if not earlier or earlier[-1][0] != index:
                earlier.append((index, entry))
    return conflicts


class CodeTable(BaseModel):
    """A governed value map, loaded from `mappings/codes/<name>.yaml`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    description: str | None = None
    owner: str | None = None
    entries: list[CodeEntry]

    @model_validator(mode="after")
    def _no_ambiguous_spellings(self) -> CodeTable:
        conflicts = spelling_conflicts(enumerate(self.entries))
        if conflicts:
            raise ValueError(conflicts[0][2])
        return self

    @staticmethod
    def _spellings(entry: CodeEntry) -> list[str]:
        return [entry.code, *([entry.name] if entry.name else []), *entry.synonyms]

    def spellings(self, day: date, output: str = "code") -> dict[str, str]:
        """Normalized spelling -> output value (`code` or `name`) for entries valid on `day`."""
        result: dict[str, str] = {}
        for entry in self.entries:
            if not entry.valid_on(day):
                continue
            value = entry.code if output == "code" else (entry.name or entry.code)
            for spelling in self._spellings(entry):
                result.setdefault(normalize_code(spelling), value)
        return result

    @cached_property
    def codes(self) -> frozenset[str]:
        """All unified codes of the table (the domain a lookup produces)."""
        return frozenset(entry.code for entry in self.entries)

    def suggestion_targets(self) -> dict[str, str]:
        """Every spelling (as written) -> its code, for fuzzy suggestions."""
        return {spelling: entry.code for entry in self.entries for spelling in self._spellings(entry)}
