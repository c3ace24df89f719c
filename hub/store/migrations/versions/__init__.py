"""The hub's revisions, one file each (see hub.store.migrations)."""
