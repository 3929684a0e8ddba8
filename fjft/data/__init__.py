"""Data for fine-tuning: read rows, clean them, split them, report on them."""

from fjft.data.clean import normalize_text
from fjft.data.readers import BadRowStats, Row, read_rows
from fjft.data.report import format_report
from fjft.data.splits import Example, Splits, load_classification_splits

__all__ = [
    "BadRowStats",
    "Example",
    "Row",
    "Splits",
    "format_report",
    "load_classification_splits",
    "normalize_text",
    "read_rows",
]
