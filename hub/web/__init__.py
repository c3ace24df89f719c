"""The hub's web side: the dashboard for guards, the staff desk, the JSON API, the live
event stream, and the service that runs them with the hub core on one event loop.

``hub.web.app.create_app`` builds the application; ``hub.web.server`` runs it.
"""
