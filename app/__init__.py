"""What people use: the ``runlake`` command line (``cli/``) and the Dash dashboard (``web/``)."""
