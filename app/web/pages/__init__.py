"""The dashboard's pages: each has ``PATH``, ``REGISTER``, ``layout(services, **kwargs)`` and ``register_callbacks(app, services)``."""
