"""Opaque public identifiers: a short prefix naming the kind, then 16 random hex characters."""

import secrets


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(8)}"
