"""The project's performance targets, and an honest validator for the design's four."""

from crypto_lakehouse.validation.targets import TARGETS, PerformanceTarget, TargetResult
from crypto_lakehouse.validation.validator import ValidationReport, Validator

__all__ = ["TARGETS", "PerformanceTarget", "TargetResult", "ValidationReport", "Validator"]
