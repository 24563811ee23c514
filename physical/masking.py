"""Personal data shown masked: one rule for the API's answers (`ecard.pii` re-exports these) and
the terminal agent's printout and logs. Here because the agent's distribution carries `physical`
alone, and `ecard` may import `physical` but not the other way round."""

from __future__ import annotations


def mask_name(name: str) -> str:
    """The first and the last character kept: `张三` -> `张*`, `张小明` -> `张*明`,
    `欧阳小明` -> `欧**明`; a name of one character is `*`."""
    if len(name) <= 1:
        return "*"
    if len(name) == 2:
        return name[0] + "*"
    return name[0] + "*" * (len(name) - 2) + name[-1]


def mask_id_number(id_number: str) -> str:
    """`320102199003071234` -> `3201**********1234` (the first 4 and last 4 kept); anything of 8
    characters or fewer is all `*`, so that nothing short is shown in full."""
    if len(id_number) <= 8:
        return "*" * len(id_number)
    return id_number[:4] + "*" * (len(id_number) - 8) + id_number[-4:]
