"""Data for fine-tuning: read rows, clean them, split them, report on them."""

from fjft.data.clean import normalize_text
from fjft.data.readers import BadRowStats, Row, read_rows
from fjft.data.report import format_report

__all__ = [
    "BadRowStats",
    "Row",
    "format_report",
    "normalize_text",
    "read_rows",
]
