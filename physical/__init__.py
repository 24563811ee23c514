"""The physical social security card: its APDU protocol, keys, card image, a virtual card and the
terminal agent.

The protocol modules (`apdu`, `tlv`, `crypto`, `keys`, `image`, `card`, `reader`) import neither
Flask nor pyscard, so the server can use `crypto` and `keys` to check a chip read. Only `pcsc`
and `terminal` talk to PC/SC, and they import pyscard lazily. See `docs/chip.md`.
"""
