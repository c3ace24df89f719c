"""The door node's hardware layer: frame sources, QR decoders and GPIO devices.

A small library that knows nothing of MQTT, policy or the hub. Hardware that only a
Raspberry Pi has (picamera2, real GPIO chips) is reached through factories, so every
part runs off the Pi: frames from files or a synthetic scene, pins from gpiozero's
mock pin factory.
"""
