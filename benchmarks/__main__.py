"""``python -m benchmarks [suite] [--runs N] [--lake PATH] [--repeat N]`` from the checkout root."""

from benchmarks.suites import main

raise SystemExit(main())
