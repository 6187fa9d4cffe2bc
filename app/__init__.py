"""The runlake dashboard (Dash) and the ``runlake`` command line."""
