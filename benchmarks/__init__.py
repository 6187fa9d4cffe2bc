"""runlake's benchmark programs (not packaged): named workloads that print tables of medians.

Run them from a checkout with ``python -m benchmarks [ingest|search|ui|compaction|all] ...`` or
``runlake bench ...``; ``suites.py`` names the suites, ``common.py`` times and renders them.
"""
