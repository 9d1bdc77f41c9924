"""Sharpen's editor: documents, structure, prose spans, validity, diffs and history (no torch)."""
