"""The contract every part of Pintu shares: passes, statuses, trust lists, events and topics.

Pure functions and data types only; nothing here does I/O beyond reading and writing
the small files handed to it.
"""
