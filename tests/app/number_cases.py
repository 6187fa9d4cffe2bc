"""How the dashboard writes numbers (``grid.format_number`` and runlake.js ``formatNumber``):
one table, checked against both implementations."""

CASES = [
    # value, shown
    (None, ""),
    (float("nan"), ""),
    (float("inf"), "∞"),
    (float("-inf"), "-∞"),
    (0, "0"),
    (0.0, "0"),
    (3, "3"),
    (100.0, "100"),
    (-1, "-1"),
    (123456, "123,456"),
    (0.5, "0.5"),
    (0.1 + 0.2, "0.3"),
    (0.93456789, "0.93457"),
    (0.123456, "0.12346"),
    (-0.000123, "-1.23e-4"),
    (0.001, "0.001"),
    (0.00099999999, "0.001"),
    (0.0009999, "9.999e-4"),
    (2.467e-7, "2.467e-7"),
    (0.000002467, "2.467e-6"),
    (1e-300, "1e-300"),
    (12.3456789, "12.346"),
    (1234.5678, "1,234.6"),
    (12345.678, "12,346"),
    (99999.95, "100,000"),
    (999999.9, "1e6"),
    (1e6, "1e6"),
    (1234567.8, "1.2346e6"),
    (3e300, "3e300"),
]


def js_literal(value: object) -> str | None:
    """The case value as text JavaScript's ``Number()`` reads (JSON has no NaN or Infinity)."""
    if value is None:
        return None
    text = repr(float(value)) if isinstance(value, float) else repr(value)
    return {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}.get(text, text)
