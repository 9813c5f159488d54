"""An honest validator for the design's four performance targets: every number is measured."""

from crypto_lakehouse.validation.targets import TARGETS, Target, TargetResult
from crypto_lakehouse.validation.validator import ValidationReport, Validator

__all__ = ["TARGETS", "Target", "TargetResult", "ValidationReport", "Validator"]
