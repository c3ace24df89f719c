"""The hub's MQTT side (``mqtt``): events in from the doors, stored through ``hub.store``,
acks and the facility's state out; the live bus the dashboard reads (``live``); Home
Assistant's discovery configs (``discovery``)."""
