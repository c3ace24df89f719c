"""The central registry: statuses, signing keys, facility registration and tracing."""
