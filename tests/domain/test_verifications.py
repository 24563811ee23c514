"""The verifications module's own promises: one declared vocabulary of reasons, and the scene a
scan is judged for (R-04, R-44), without HTTP."""

import pytest

import qr
from ecard import errors
from ecard.auth import TerminalPrincipal
from ecard.verifications import Reason, SceneRefused, judged_scene


def _subclasses(cls):
    for sub in cls.__subclasses__():
        yield sub
        yield from _subclasses(sub)


def test_every_reason_a_decision_can_carry_is_declared():
    from_qr = {c.code for c in _subclasses(qr.QrError)} - {"trust_list.stale"}  # a gate's own concern
    from_cards = {c.code for c in (errors.CardLost, errors.CardFrozen, errors.CardCancelled, errors.CardExpired,
                                   errors.CardReplaced, errors.CardNotIssued)}
    declared = {r.value for r in Reason}
    assert from_qr <= declared and from_cards <= declared
    assert all(r.value.count(".") == 1 for r in Reason)


def _terminal(*scenes):
    return TerminalPrincipal(1, "trm_x", 1, "mch_x", scenes, False)


@pytest.mark.parametrize("served, claimed, code_scene, expected", [
    (("transit",), None, None, "transit"),  # the merchant's only scene
    (("transit",), "clinic", None, Reason.QR_WRONG_SCENE),  # a claim beyond the merchant's scenes
    (("clinic", "transit"), None, None, Reason.QR_SCENE_REQUIRED),  # never the clinic by default
    (("clinic", "transit"), "transit", None, "transit"),
    (("clinic", "transit"), None, "clinic", "clinic"),  # a signed code carries its scene
    (("clinic", "transit"), "transit", "clinic", Reason.QR_WRONG_SCENE),
    (("transit",), None, "clinic", Reason.QR_WRONG_SCENE),
])
def test_r04_the_scene_judged_is_one_the_merchant_serves(served, claimed, code_scene, expected):
    try:
        got = judged_scene(_terminal(*served), claimed, code_scene)
    except SceneRefused as exc:
        got = exc.reason
    assert got == expected
