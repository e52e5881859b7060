"""Evaluation: generation over test sets, answer extraction, balanced accuracy, reports."""
