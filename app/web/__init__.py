"""The Dash dashboard: ``server.create_app(settings, lake)`` builds it; one module per page in ``pages/``."""
