"""The door node application: scan, decide, signal, count, journal and deliver events."""
