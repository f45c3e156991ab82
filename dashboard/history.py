"""The usage history: a user's generations filtered, counted per day for the chart, and exported as CSV."""

import csv
import datetime
from dataclasses import dataclass
from decimal import Decimal

from django import forms
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db.models import Count, Q, Sum
from django.db.models.functions import TruncDate
from django.utils import timezone

from accounts.models import ApiKey
from generation import images
from generation.models import Generation

PAGE_SIZE = 25
CHART_DAYS = 30  # shown when no date range is chosen
MAX_CHART_DAYS = 366
PLAYGROUND = "playground"  # the key filter's value for rows made in the dashboard (no key)
# Dates outside these are refused on the form: a day after 9999-12-31 or before 0001-01-01 cannot
# be computed, and the range arithmetic below adds and subtracts days.
FIRST_DAY = datetime.date(2000, 1, 1)
LAST_DAY = datetime.date(2999, 12, 31)
DATE_RANGE_MESSAGE = f"Choose a date between {FIRST_DAY.isoformat()} and {LAST_DAY.isoformat()}."


def _history_date(label: str) -> forms.DateField:
    return forms.DateField(
        required=False, label=label, widget=forms.DateInput(attrs={"type": "date"}),
        validators=[MinValueValidator(FIRST_DAY, DATE_RANGE_MESSAGE), MaxValueValidator(LAST_DAY, DATE_RANGE_MESSAGE)],
    )


def _utc_midnight(day: datetime.date) -> datetime.datetime:
    return datetime.datetime.combine(day, datetime.time(), datetime.UTC)


def today_utc() -> datetime.date:
    return timezone.now().astimezone(datetime.UTC).date()


class HistoryFilterForm(forms.Form):
    start = _history_date("From")
    end = _history_date("To")
    status = forms.ChoiceField(required=False, choices=[("", "Any status"), *Generation.Status.choices])
    orientation = forms.ChoiceField(
        required=False, choices=[("", "Any orientation"), *Generation.Orientation.choices]
    )
    key = forms.ChoiceField(required=False, label="Key")

    def __init__(self, data, *, user):
        super().__init__(data)
        # Revoked keys stay listed: their generations are still in the history.
        self.fields["key"].choices = [
            ("", "Any key"),
            (PLAYGROUND, "Playground"),
            *((str(key.pk), f"{key.name or 'Unnamed'} ({key.prefix}…)") for key in ApiKey.objects.filter(user=user)),
        ]

    def clean(self):
        cleaned = super().clean()
        start, end = cleaned.get("start"), cleaned.get("end")
        if start and end and start > end:
            self.add_error("end", "The end date is before the start date.")
        return cleaned

    @property
    def filters(self) -> dict:
        """The valid filters only: a bad field is reported on the form and otherwise ignored."""
        self.is_valid()
        return {name: value for name, value in self.cleaned_data.items() if value}


def filter_generations(*, user, start=None, end=None, status="", orientation="", key=""):
    """The user's generations, newest first. Dates are UTC days, both ends included."""
    rows = Generation.objects.filter(user=user).select_related("api_key")
    if start:
        rows = rows.filter(created_at__gte=_utc_midnight(start))
    if end:
        rows = rows.filter(created_at__lt=_utc_midnight(end + datetime.timedelta(days=1)))
    if status:
        rows = rows.filter(status=status)
    if orientation:
        rows = rows.filter(orientation=orientation)
    if key == PLAYGROUND:
        rows = rows.filter(api_key__isnull=True)
    elif key:
        rows = rows.filter(api_key_id=int(key))
    # Sort by created, then id: rows of the same instant keep a stable order across pages.
    return rows.order_by("-created_at", "-id")


@dataclass(frozen=True)
class DayTotal:
    day: datetime.date
    images: int
    spend_usd: Decimal


def chart_range(*, start=None, end=None, **_) -> tuple[datetime.date, datetime.date]:
    """The days the chart covers: the filter's range, else the last CHART_DAYS; at most a year."""
    end = end or today_utc()
    start = min(start, end) if start else end - datetime.timedelta(days=CHART_DAYS - 1)  # a start after today
    return max(start, end - datetime.timedelta(days=MAX_CHART_DAYS - 1)), end


def daily_totals(rows, *, start: datetime.date, end: datetime.date) -> list[DayTotal]:
    """Images delivered and money charged per UTC day, every day of the range (zeros included)."""
    counted = (
        rows.filter(created_at__gte=_utc_midnight(start), created_at__lt=_utc_midnight(end + datetime.timedelta(days=1)))
        .annotate(day=TruncDate("created_at", tzinfo=datetime.UTC))
        .order_by()  # no ordering, or it would join the GROUP BY
        .values("day")
        .annotate(images=Count("pk", filter=Q(status=Generation.Status.SUCCEEDED)), spend=Sum("cost_usd"))
    )
    by_day = {row["day"]: row for row in counted}
    totals = []
    for offset in range((end - start).days + 1):
        day = start + datetime.timedelta(days=offset)
        row = by_day.get(day, {})
        totals.append(DayTotal(day=day, images=row.get("images", 0), spend_usd=row.get("spend") or Decimal(0)))
    return totals


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    label: str  # "2025-05-01: 12 images", for the bar's tooltip and screen readers


@dataclass(frozen=True)
class BarChart:
    """An SVG bar chart's geometry, in viewBox units, so the template only draws."""

    bars: list[Bar]
    max_label: str
    total_label: str
    first_day: datetime.date
    last_day: datetime.date
    width: int = 720
    height: int = 160
    top: int = 8  # the peak's grid line
    bottom: int = 159  # the baseline

    @property
    def has_data(self) -> bool:
        return any(bar.height for bar in self.bars)


def bar_chart(totals: list[DayTotal], *, value, describe) -> BarChart:
    """`value(day_total)` is the bar's number; `describe(number)` writes it for people."""
    width, top, bottom = BarChart.width, BarChart.top, BarChart.bottom
    values = [value(total) for total in totals]
    peak = float(max(values)) or 1.0
    slot = width / len(totals)
    gap = min(2.0, slot * 0.2)
    bars = []
    for index, (total, number) in enumerate(zip(totals, values, strict=True)):
        # A non-zero day is at least one unit tall, so it never disappears next to a big one.
        height = max(1.0, (bottom - top) * float(number) / peak) if number else 0.0
        bars.append(Bar(
            x=round(index * slot + gap / 2, 2), y=round(bottom - height, 2), width=round(slot - gap, 2),
            height=round(height, 2), label=f"{total.day:%b %-d}: {describe(number)}",
        ))
    return BarChart(
        bars=bars, max_label=describe(max(values)), total_label=describe(sum(values)),
        first_day=totals[0].day, last_day=totals[-1].day,
    )


def usage_charts(totals: list[DayTotal]) -> dict[str, BarChart]:
    return {
        "images": bar_chart(totals, value=lambda t: t.images, describe=lambda n: f"{n:,} image{'' if n == 1 else 's'}"),
        "spend": bar_chart(totals, value=lambda t: t.spend_usd, describe=lambda n: f"${n:,.3f}"),
    }


CSV_COLUMNS = [
    "created_at_utc", "id", "status", "error_code", "prompt", "enhanced_prompt", "orientation", "width", "height",
    "allow_nsfw", "enhance", "key_prefix", "key_name", "cost_usd", "generation_time_ms", "image_url",
]


def _spreadsheet_safe(text: str) -> str:
    # A prompt starting with = + - @ would run as a formula when the CSV is opened in a
    # spreadsheet (CSV injection); a leading apostrophe makes spreadsheets show it as text.
    return f"'{text}" if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def csv_rows(rows, *, request):
    """The header, then one list per generation: the columns of CSV_COLUMNS."""
    yield CSV_COLUMNS
    for generation in rows.iterator(chunk_size=2000):
        key = generation.api_key
        yield [
            generation.created_at.astimezone(datetime.UTC).isoformat(timespec="seconds"),
            str(generation.id),
            generation.status,
            generation.error_code,
            _spreadsheet_safe(generation.prompt),
            _spreadsheet_safe(generation.enhanced_prompt),
            generation.orientation,
            generation.width,
            generation.height,
            str(generation.allow_nsfw).lower(),
            str(generation.enhance).lower(),
            key.prefix if key else "",
            _spreadsheet_safe(key.name) if key else PLAYGROUND,
            f"{generation.cost_usd:.6f}",
            generation.total_ms if generation.total_ms is not None else "",
            images.image_url(generation.image, request=request) if generation.image else "",
        ]


class _Echo:
    """A file-like object that hands each written line back, for a streamed CSV."""

    def write(self, value):
        return value


def csv_lines(rows, *, request):
    writer = csv.writer(_Echo())
    return (writer.writerow(row) for row in csv_rows(rows, request=request))
