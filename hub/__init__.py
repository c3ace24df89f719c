"""The facility hub: ingest, occupancy and capacity, dashboard, staff desk."""
