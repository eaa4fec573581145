"""Five-field cron expressions, in UTC: parsing (with errors naming the field) and the next
matching minute after a given time.

Fields: ``minute hour day-of-month month day-of-week``. Each is ``*``, a value, a range
``a-b``, a step ``*/n``, ``a-b/n`` or ``a/n`` (``a`` to the field's maximum), or a comma list
of those. Months take ``jan``..``dec`` and days ``sun``..``sat`` (any case); day-of-week 0
and 7 are both Sunday. The macros ``@yearly`` (``@annually``), ``@monthly``, ``@weekly``,
``@daily`` (``@midnight``) and ``@hourly`` are accepted.

Day-of-month and day-of-week combine as in Vixie cron: if either field starts with ``*``
(``*/2`` included) a day must match both; if both are restricted, a day matching either
one matches (``0 0 1 * mon``: the 1st of each month and every Monday).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

__all__ = ["CronSpec", "parse"]

_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
_MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
# (name, lowest, highest, names for lowest.., offset of names)
_FIELDS: tuple[tuple[str, int, int, tuple[str, ...]], ...] = (
    ("minute", 0, 59, ()),
    ("hour", 0, 23, ()),
    ("day-of-month", 1, 31, ()),
    ("month", 1, 12, _MONTHS),
    ("day-of-week", 0, 7, _DAYS),
)
_LONGEST_DAYS = {1: 31, 2: 29, 3: 31, 4: 30, 5: 31, 6: 30, 7: 31, 8: 31, 9: 30, 10: 31, 11: 30}
#: Days searched for a match before giving up: 28 years, after which the calendar's
#: weekdays and leap days repeat (between 1901 and 2099), so a spec silent that long never fires.
_SEARCH_DAYS = 366 * 28
_MINUTE = timedelta(minutes=1)


@dataclass(frozen=True, slots=True)
class CronSpec:
    """A parsed cron expression: the allowed values of each field."""

    expr: str
    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    days: frozenset[int]
    months: tuple[int, ...]
    weekdays: frozenset[int]  # 0 = Sunday
    dom_star: bool
    dow_star: bool

    def _day_matches(self, day: datetime) -> bool:
        dom = day.day in self.days
        dow = (day.weekday() + 1) % 7 in self.weekdays
        if self.dom_star or self.dow_star:
            return dom and dow
        return dom or dow

    def next_after(self, t: datetime) -> datetime:
        """The first matching minute strictly after ``t`` (naive: taken as UTC), in UTC.

        Raises:
            ValueError: no minute matches within 28 years (the spec never fires).
        """
        t = t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)
        t = t.replace(second=0, microsecond=0) + _MINUTE
        days_searched = 0
        while days_searched <= _SEARCH_DAYS:
            if t.month not in self.months:
                later = [m for m in self.months if m > t.month]
                if later:
                    t = t.replace(month=later[0], day=1, hour=0, minute=0)
                else:
                    t = t.replace(year=t.year + 1, month=self.months[0], day=1, hour=0, minute=0)
                days_searched += 28
                continue
            if not self._day_matches(t):
                t = t.replace(hour=0, minute=0) + timedelta(days=1)
                days_searched += 1
                continue
            hour = _next_in(self.hours, t.hour)
            if hour is None:
                t = t.replace(hour=0, minute=0) + timedelta(days=1)
                days_searched += 1
                continue
            if hour != t.hour:
                t = t.replace(hour=hour, minute=0)
            minute = _next_in(self.minutes, t.minute)
            if minute is None:
                t = t.replace(minute=0) + timedelta(hours=1)
                continue
            return t.replace(minute=minute)
        raise ValueError(f"cron {self.expr!r} never fires (no matching day within 28 years)")


def _next_in(values: tuple[int, ...], at_least: int) -> int | None:
    for value in values:
        if value >= at_least:
            return value
    return None


def _value(text: str, field: str, lowest: int, highest: int, names: tuple[str, ...]) -> int:
    if text.isdigit():
        value = int(text)
    elif names and text.lower() in names:
        value = names.index(text.lower()) + lowest
    else:
        known = f" or a name ({', '.join(names)})" if names else ""
        raise ValueError(f"{field}: {text!r} is not a number{known}")
    if not lowest <= value <= highest:
        raise ValueError(f"{field}: value {value} out of range {lowest}-{highest}")
    return value


def _field(text: str, field: str, lowest: int, highest: int, names: tuple[str, ...]) -> set[int]:
    values: set[int] = set()
    for item in text.split(","):
        if not item:
            raise ValueError(f"{field}: empty item in list {text!r}")
        span, slash, step_text = item.partition("/")
        step = 1
        if slash:
            if not step_text.isdigit() or int(step_text) < 1:
                raise ValueError(f"{field}: step {step_text!r} must be a whole number >= 1")
            step = int(step_text)
        if span == "*":
            first, last = lowest, highest
        elif "-" in span:
            first_text, _, last_text = span.partition("-")
            first = _value(first_text, field, lowest, highest, names)
            last = _value(last_text, field, lowest, highest, names)
            if first > last:
                raise ValueError(f"{field}: range {span!r} runs backwards")
        else:
            first = _value(span, field, lowest, highest, names)
            last = highest if slash else first
        values.update(range(first, last + 1, step))
    return values


def parse(expr: str) -> CronSpec:
    """Parse a five-field cron expression (or an ``@`` macro).

    Raises:
        ValueError: the expression is malformed or never fires; the message quotes the
            expression and names the field (``cron '* * * 13 *': month: value 13 out of
            range 1-12``).
        TypeError: ``expr`` is not a str.
    """
    if not isinstance(expr, str):
        raise TypeError(f"a cron expression is a str, got {expr!r}")
    text = _MACROS.get(expr.strip().lower(), expr)
    parts = text.split()
    if len(parts) != 5:
        raise ValueError(
            f"cron {expr!r}: needs 5 fields (minute hour day-of-month month day-of-week), "
            f"got {len(parts)}"
        )
    try:
        sets = [_field(p, *spec) for p, spec in zip(parts, _FIELDS, strict=True)]
    except ValueError as exc:
        raise ValueError(f"cron {expr!r}: {exc}") from None
    minutes, hours, days, months, weekdays = sets
    if 7 in weekdays:
        weekdays = (weekdays - {7}) | {0}
    dom_star, dow_star = parts[2].startswith("*"), parts[4].startswith("*")
    spec = CronSpec(
        expr=expr,
        minutes=tuple(sorted(minutes)),
        hours=tuple(sorted(hours)),
        days=frozenset(days),
        months=tuple(sorted(months)),
        weekdays=frozenset(weekdays),
        dom_star=dom_star,
        dow_star=dow_star,
    )
    if dow_star and not any(min(days) <= _LONGEST_DAYS.get(m, 31) for m in spec.months):
        raise ValueError(
            f"cron {expr!r}: day-of-month: no month in the month field has day {min(days)}"
        )
    spec.next_after(datetime(2000, 1, 1, tzinfo=UTC))  # raises if it never fires
    return spec
