"""The pages' words, in Chinese (the default) and English.

Refusals are not written here: a problem's words are its `Code`'s titles (`ecard.errors`), the
same the API answers with. Only what the table has no words for is here: the pages' own labels,
and the reasons a scan is refused that are not also problems (`qr.*`, `chip.*`, ...).
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from flask import request, session

from ecard.errors import Code

LANGS = ("zh", "en")

# key -> (zh, en)
WORDS: dict[str, tuple[str, str]] = {
    # the frame
    "lang_switch": ("English", "中文"),
    "sign_in": ("登录", "Sign in"),
    "sign_out": ("退出", "Sign out"),
    "back": ("返回", "Back"),
    "done": ("已完成", "Done"),
    "none": ("暂无记录", "Nothing yet"),
    "more": ("更多", "More"),
    # fields
    "id_number": ("身份证号码", "ID number"),
    "name": ("姓名", "Name"),
    "card_no": ("社会保障卡卡号", "Card number"),
    "pin": ("密码", "PIN"),
    "password": ("密码", "Password"),
    "ecard_password": ("电子社保卡密码", "Password"),
    "terminal_id": ("终端编号", "Terminal ID"),
    "secret": ("终端密钥", "Secret"),
    "username": ("用户名", "Username"),
    "phone": ("手机号码", "Phone"),
    "purpose": ("查询事由", "Purpose"),
    "scene": ("场景", "Scene"),
    "reason": ("原因", "Reason"),
    "relation": ("关系", "Relation"),
    "consent_code": ("授权码", "Consent code"),
    "evidence_kind": ("证明材料", "Evidence"),
    "evidence_no": ("证明编号", "Evidence number"),
    "kind": ("类型", "Kind"),
    "new_pin": ("新卡密码（由持卡人输入）", "PIN (typed by the holder)"),
    # h5
    "h5_title": ("电子社保卡", "Electronic social security card"),
    "h5_sign_in_hint": (
        "请输入本人身份证号码、姓名、社会保障卡卡号和密码",
        "Your ID number, name, card number and PIN",
    ),
    "card_face": ("卡面", "Card"),
    "show_clear": ("显示完整信息", "Show in full"),
    "hide_clear": ("隐藏", "Hide"),
    "status": ("状态", "Status"),
    "ecard_status": ("电子社保卡", "E-card"),
    "expires_at": ("有效期至", "Valid until"),
    "show_code": ("出示二维码", "Show code"),
    "qr_code": ("二维码", "QR code"),
    "code_for_all": ("一码通用：医院、乘车、景区、身份核验", "One code for every scene"),
    "refresh_in": ("秒后自动刷新", "seconds until it refreshes"),
    "refresh_now": ("刷新", "Refresh"),
    "code_expired": ("二维码已过期，请刷新", "The code has expired: refresh it"),
    "unlock": ("解锁", "Unlock"),
    "unlock_hint": (
        "出示可支付的二维码前，请输入电子社保卡密码",
        "Enter the e-card password before the code that can pay is shown",
    ),
    "locked_until": ("密码已锁定，解锁时间：", "The password is locked until "),
    "tries_left": ("剩余次数：", "Tries left: "),
    "set_password": ("设置电子社保卡密码", "Set the e-card password"),
    "set_password_hint": ("用社会保障卡密码设置", "Authorised by your card's PIN"),
    "password_set": ("已设置电子社保卡密码", "The e-card password is set"),
    "report_loss": ("临时挂失", "Report lost (temporary)"),
    "report_loss_hint": (
        "挂失立即生效；7天内可到服务网点解除或办理正式挂失",
        "Takes effect at once; withdraw it or report formally at a service window",
    ),
    "loss_lapses_at": ("临时挂失到期：", "The temporary loss lapses at "),
    "usage": ("用卡记录", "Usage"),
    "family": ("亲情服务", "Family"),
    "audit": ("谁操作和查看了我的卡", "Who acted on my card"),
    "dependants": ("我代管的亲属", "My dependants"),
    "proxies": ("代管我的亲属", "My proxies"),
    "bind_dependant": ("添加亲属", "Add a dependant"),
    "consent_codes": ("授权码", "Consent code"),
    "new_consent_code": ("生成授权码", "Make a consent code"),
    "consent_code_is": ("授权码（请告知代管亲属）：", "Consent code (give it to your proxy): "),
    "shown_for": ("代亲属出示：", "Shown for "),
    "signals": ("风险提示", "Misuse signals"),
    "at": ("时间", "When"),
    "action": ("事项", "What"),
    "actor": ("操作方", "Who"),
    "merchant": ("地点", "Where"),
    "result": ("结果", "Result"),
    # scan
    "scan_title": ("扫码核验", "Scanner"),
    "scan_camera": ("摄像头扫码", "Camera"),
    "start_camera": ("打开摄像头", "Start camera"),
    "scanner_field": ("扫码枪输入", "Code (scanner or typed)"),
    "check": ("核验", "Check"),
    "use_scene": ("切换场景", "Use this scene"),
    "decision": ("核验结果", "Decision"),
    "accepted": ("核验通过", "Accepted"),
    "refused": ("核验未通过", "Refused"),
    "by_proxy": ("由亲属出示", "Shown by a relative"),
    "waiting": ("请出示二维码", "Waiting for a code"),
    "no_camera": ("无法打开摄像头", "No camera"),
    "age_band": ("年龄段", "Age band"),
    "sex": ("性别", "Sex"),
    "insured": ("参保", "Insured"),
    # window
    "window_title": ("服务网点", "Service window"),
    "find_person": ("查询人员", "Find a person"),
    "find": ("查询", "Find"),
    "register": ("登记人员", "Register a person"),
    "eligibility": ("申领依据", "Eligibility"),
    "person": ("人员", "Person"),
    "card": ("社会保障卡", "Card"),
    "no_card": ("暂无有效卡", "No live card"),
    "history": ("卡片记录", "Card history"),
    "apply": ("申领", "Apply"),
    "issue": ("发卡", "Issue"),
    "loss_temporary": ("临时挂失", "Temporary loss"),
    "loss_formal": ("正式挂失", "Formal loss"),
    "unhang": ("解除挂失", "Withdraw the loss"),
    "reissue": ("补领", "Reissue"),
    "replace": ("换领", "Replace"),
    "cancel": ("注销", "Cancel"),
    "freeze": ("冻结", "Freeze"),
    "unfreeze": ("解冻", "Unfreeze"),
    "unlock_pin": ("解锁密码", "Unlock the PIN"),
    "temporary_card": ("制作临时卡", "Make a temporary card"),
    "record_relation": ("登记亲属关系", "Record a family relation"),
    "relative_id_number": ("亲属身份证号码", "Relative's ID number"),
    "print_consent": ("打印授权码", "Print a consent code"),
    "reset_ecard_password": ("重置电子社保卡密码", "Reset the e-card password"),
    "frozen": ("已冻结", "frozen"),
    "pin_locked": ("密码已锁定", "PIN locked"),
    "print": ("打印", "Print"),
    "requested_by": ("申请人", "Asked by"),
    "requester_id_number": ("申请人身份证号码（非本人申请时）", "Requester's ID number (if not the holder)"),
    "proof_kind": ("证明材料", "Proof"),
    "proof_no": ("证明编号", "Proof number"),
    "proof": ("证明材料", "Proof"),
    "cancellation": ("注销信息", "Cancellation"),
    "requester": ("申请人", "Requester"),
    # h5: channels and family
    "channels": ("绑定渠道", "My channels"),
    "channel": ("渠道", "Channel"),
    "device": ("设备", "Device"),
    "since": ("绑定时间", "Since"),
    "current": ("当前", "This one"),
    "revoke_channel": ("解除绑定", "Revoke"),
    "channel_revoked": ("已解除渠道绑定", "The channel's binding is revoked"),
    "unbind_dependant": ("解除代管", "Unbind"),
    "dependant_unbound": ("已解除代管", "The dependant is unbound"),
    "revoke_proxy": ("解除授权", "Revoke"),
    "proxy_revoked": ("已解除该亲属的代管", "The proxy is revoked"),
    # h5: a dependant's card
    "dependant": ("代管的亲属", "Dependant"),
    "binding_status": ("代管状态", "Binding"),
    "view_dependant": ("查看卡片", "View the card"),
    "dependant_signals": ("查看风险提示", "Misuse signals"),
    "dependant_loss": ("为亲属临时挂失", "Report the dependant's card lost (temporary)"),
    "dependant_loss_done": ("已为亲属临时挂失", "The dependant's card is reported lost"),
    "read_recorded": (
        "查看记录会留在亲属本人的用卡记录中",
        "Your look is recorded in your dependant's own record",
    ),
    # window: overdue cards and a person's proxies
    "overdue": ("逾期未制卡", "Overdue cards"),
    "overdue_hint": (
        "已申领、超过制卡期限仍未发卡的社会保障卡，等待最久的在前",
        "Cards applied for and not issued by their production deadline, the longest waiting first",
    ),
    "applied_at": ("申领时间", "Applied"),
    "production_deadline": ("制卡期限", "Production deadline"),
    "days_overdue": ("逾期天数", "Days overdue"),
    "open_for_card_service": ("办理（卡片业务）", "Open (card service)"),
    "person_proxies": ("代管该人员的亲属", "Their proxies"),
    "show_proxies": ("查看代管亲属", "Show the proxies"),
    "end_proxy": ("解除代管", "End"),
    "proxy_ended_at_window": ("已在服务网点解除该代管", "The proxy's binding is ended"),
    "since_date": ("开始时间", "Since"),
}

# Card and e-card states, scenes and the like: the stored word -> (zh, en).
VALUES: dict[str, tuple[str, str]] = {
    "applied": ("已申领", "Applied for"),
    "issued": ("正常", "Issued"),
    "lost_temporary": ("临时挂失", "Lost (temporary)"),
    "lost_formal": ("正式挂失", "Lost (formal)"),
    "reissued": ("已补领", "Reissued"),
    "replaced": ("已换领", "Replaced"),
    "cancelled": ("已注销", "Cancelled"),
    "expired": ("已过期", "Expired"),
    "active": ("正常", "Active"),
    "suspended": ("暂停使用", "Suspended"),
    "pending": ("待启用", "Pending"),
    "ended": ("已终止", "Ended"),
    "clinic": ("医疗", "Clinic"),
    "transit": ("乘车", "Transit"),
    "scenic": ("景区", "Scenic"),
    "identity": ("身份核验", "Identity"),
    "any": ("通用", "Any scene"),
    "temporary": ("临时", "Temporary"),
    "formal": ("正式", "Formal"),
    "M": ("男", "Male"),
    "F": ("女", "Female"),
    "under_6": ("6岁以下", "Under 6"),
    "6_17": ("6-17岁", "6 to 17"),
    "18_59": ("18-59岁", "18 to 59"),
    "60_69": ("60-69岁", "60 to 69"),
    "70_plus": ("70岁及以上", "70 and over"),
    "qr": ("二维码", "QR code"),
    "chip": ("芯片", "Chip"),
    "offline": ("离线", "Offline"),
    "parent": ("父母", "Parent"),
    "grandparent": ("祖父母", "Grandparent"),
    "guardian": ("监护人", "Guardian"),
    "spouse": ("配偶", "Spouse"),
    "child": ("子女", "Child"),
    "sibling": ("兄弟姐妹", "Sibling"),
    "other": ("其他", "Other"),
    "minor": ("未成年人", "Minor"),
    "adult": ("成年人", "Adult"),
    "holder": ("本人", "Holder"),
    "operator": ("服务网点", "Service window"),
    "proxy": ("代管亲属", "Proxy"),
    "system": ("系统", "System"),
    "terminal": ("终端", "Terminal"),
    "household_register": ("户口簿", "Household register"),
    "birth_certificate": ("出生医学证明", "Birth certificate"),
    "guardianship_order": ("监护裁定", "Guardianship order"),
    "marriage_certificate": ("结婚证", "Marriage certificate"),
    "household_registration": ("本地户籍", "Local household registration"),
    "local_insurance": ("本地参保", "Local insurance"),
    "household_certificate": ("户籍证明", "Household certificate"),
    "insurance_record": ("参保记录", "Insurance record"),
    "damaged": ("损坏", "Damaged"),
    "unreadable": ("无法读取", "Unreadable"),
    "data_changed": ("信息变更", "Data changed"),
    "appearance": ("外观", "Appearance"),
    "upgrade": ("升级", "Upgrade"),
    "renewal": ("到期换卡", "Renewal"),
    "quality_fault": ("质量问题", "Quality fault"),
    "death": ("死亡", "Death"),
    "declared_death": ("宣告死亡", "Declared death"),
    "missing": ("宣告失踪", "Missing"),
    "emigration": ("出国定居", "Emigration"),
    "transfer": ("转出", "Transfer"),
    "entitlement_ended": ("待遇终止", "Entitlement ended"),
    "window_lookup": ("窗口查询", "Window look-up"),
    "holder_request": ("本人申请", "The holder asked"),
    "card_service": ("卡片业务", "Card service"),
    "family": ("亲属业务", "Family"),
    "complaint": ("投诉处理", "Complaint"),
    "supervision": ("监督检查", "Supervision"),
    # who asks for a cancellation, and what they show
    "household_member": ("同户成员", "Household member"),
    "death_certificate": ("死亡医学证明", "Death certificate"),
    "household_cancellation": ("户口注销证明", "Household registration cancelled"),
    "court_judgment": ("法院判决书", "Court judgment"),
    # the channels a holder binds (`ecards.CHANNELS`) and why a binding or a family link ended
    "app": ("社保卡APP", "The e-card app"),
    "wechat": ("微信", "WeChat"),
    "alipay": ("支付宝", "Alipay"),
    "bank": ("银行", "Bank"),
    "window": ("服务窗口", "Window"),
    "revoked": ("已解除", "Revoked"),
    "signed_out": ("已退出", "Signed out"),
    "unbound_by_proxy": ("代管人解除", "Unbound by the proxy"),
    "revoked_by_dependant": ("本人解除", "Revoked by the dependant"),
    "ended_at_window": ("服务网点解除", "Ended at a service window"),
    "card_cancelled": ("卡片已注销", "The card was cancelled"),
}

# What happened to a card or was done with it: every action the domain records in a card's
# history and a holder's audit (an Event's `action`: `ecard.cards`, `ecards`, `proxies`, `codes`,
# `signals`, `reads`, `api.auth`), in words. One with no words here is shown as its code.
ACTIONS: dict[str, tuple[str, str]] = {
    # the card's life (`ecard.cards`)
    "applied": ("申领", "Applied for"),
    "issued": ("发卡", "Issued"),
    "issued_temporary": ("发放临时卡", "Temporary card issued"),
    "personalized": ("芯片个人化", "Chip personalised"),
    "lost_temporary": ("临时挂失", "Reported lost (temporary)"),
    "lost_formal": ("正式挂失", "Reported lost (formal)"),
    "loss_lapsed": ("临时挂失到期解除", "Temporary loss lapsed"),
    "unhung": ("解除挂失", "Loss withdrawn"),
    "reissued": ("补领", "Reissued"),
    "reissued_new": ("补领的新卡", "New card (reissue)"),
    "replaced": ("换领", "Replaced"),
    "replaced_new": ("换领的新卡", "New card (replacement)"),
    "returned": ("临时卡收回", "Temporary card returned"),
    "cancelled": ("注销", "Cancelled"),
    "expired": ("卡片到期", "Expired"),
    "frozen": ("冻结", "Frozen"),
    "unfrozen": ("解冻", "Unfrozen"),
    "pin_locked": ("密码锁定", "PIN locked"),
    "pin_unlocked": ("密码解锁", "PIN unlocked"),
    "ecard_rebound": ("电子社保卡随新卡换绑", "E-card moved to the new card"),
    # the e-card (`ecard.ecards`, `api.auth`)
    "ecard_signed": ("在渠道签发电子社保卡", "E-card signed in a channel"),
    "binding_revoked": ("解除渠道绑定", "Channel binding revoked"),
    "signed_out": ("退出登录", "Signed out"),
    "ecard_password_set": ("设置电子社保卡密码", "E-card password set"),
    "ecard_password_changed": ("修改电子社保卡密码", "E-card password changed"),
    "ecard_password_reset": ("重置电子社保卡密码", "E-card password reset"),
    "ecard_password_locked": ("电子社保卡密码锁定", "E-card password locked"),
    # family (`ecard.proxies`, `codes`)
    "consent_code_issued": ("生成授权码", "Consent code made"),
    "proxy_bound": ("亲情绑定", "Family binding made"),
    "proxy_ended": ("解除亲情绑定", "Family binding ended"),
    "proxy_code_issued": ("亲属代为出示二维码", "Code shown by a relative"),
    # misuse (`ecard.signals`)
    "misuse_signal": ("风险提示", "Misuse signal"),
    # reads (`ecard.reads`, R-72)
    "personal_data_read": ("服务网点查看个人信息", "Personal data read at a window"),
    "card_read": ("服务网点查询卡片", "Card looked up at a window"),
    "proxy_card_read": ("代管亲属查看卡片", "Card read by a relative"),
    "proxies_read": ("服务网点查询代管亲属", "Proxies looked up at a window"),
}

# Misuse signals: each kind `ecard.signals` raises, then each key of a signal's evidence
# (`schemas.SignalEvidenceOut` and the `PlaceOut` of each side), in words; the evidence is shown
# in this table's order. One with no words here is shown as stored.
SIGNALS: dict[str, tuple[str, str]] = {
    # kinds
    "code.replayed_elsewhere": (
        "同一二维码在另一终端再次出示",
        "The same code shown again at another terminal",
    ),
    "code.two_devices": ("同一二维码在两处使用（其中一处离线）", "One code used in two places, one offline"),
    "travel.impossible": (
        "两次用卡相距过远，时间内无法到达",
        "Two uses too far apart for the time between them",
    ),
    "chip.counter_backwards": (
        "芯片计数器未递增（疑似复制芯片或重放）",
        "The chip's counter did not rise (a copied chip or a replay)",
    ),
    "pin.locked": ("社会保障卡密码多次输错已锁定", "The card's PIN locked after wrong tries"),
    "ecard_password.locked": (
        "电子社保卡密码多次输错已锁定",
        "The e-card password locked after wrong tries",
    ),
    # evidence: the two uses, a place, a chip's counter, a lock
    "first": ("第一次使用", "First use"),
    "second": ("第二次使用", "Second use"),
    "distance_km": ("相距（公里）", "Distance (km)"),
    "minutes": ("间隔（分钟）", "Minutes between"),
    "at": ("时间", "When"),
    "terminal": ("终端", "Terminal"),
    "merchant": ("商户", "Merchant"),
    "region": ("地区", "Region"),
    "counter": ("本次计数", "Counter read"),
    "last_counter": ("上次计数", "Last counter seen"),
    "wrong_tries": ("输错次数", "Wrong tries"),
}

# The reasons a scan is refused that are not problems (those are the Code table's): shown big
# at a counter, so a cashier reads what to do.
REASONS: dict[str, tuple[str, str]] = {
    "qr.malformed": ("不是社保卡二维码", "Not an e-card code"),
    "qr.bad_signature": ("二维码无效", "Invalid code"),
    "qr.expired": ("二维码已过期，请刷新", "The code has expired: ask for a fresh one"),
    "qr.not_yet_valid": ("二维码尚未生效", "The code is not valid yet"),
    "qr.wrong_scene": ("二维码不适用于本场景", "The code is for another scene"),
    "qr.unknown_key": ("无法识别的签发密钥", "Unknown issuing key"),
    "qr.totp_invalid": ("离线码无效", "Invalid offline code"),
    "qr.replayed": ("二维码已使用（重复扫码）", "Replayed: this code was already used"),
    "qr.scene_required": ("请先选择扫码场景", "Choose the scene first"),
    "qr.credential_revoked": ("设备凭证已吊销", "The phone's credential is revoked"),
    "qr.identity_code_required": ("请出示身份核验码", "An identity code is needed"),
    "qr.too_many_attempts": ("尝试次数过多", "Too many attempts"),
    "offline.bad_scan_time": ("扫码时间不合理", "Implausible scan time"),
    "offline.judged_online": ("已在线核验", "Already judged online"),
    "federation.issuer_unavailable": ("发卡地区暂时无法核验", "The card's region did not answer"),
}


def lang() -> str:
    """The page's language: the switch's choice, else the browser's Accept-Language, else Chinese."""
    chosen = session.get("lang")
    if chosen in LANGS:
        return chosen
    best = request.accept_languages.best_match(["zh-CN", "zh", "en"])
    return "en" if best == "en" else "zh"


def t(key: str) -> str:
    zh, en = WORDS[key]
    return en if lang() == "en" else zh


def value(word: str | None) -> str:
    """A stored word (a state, a scene, a relation) in the page's language; itself when unknown."""
    if word is None:
        return ""
    pair = VALUES.get(word)
    if pair is None:
        return word
    return pair[1] if lang() == "en" else pair[0]


def action_words(action: str) -> str:
    """An action of a card's history or a holder's audit in the page's language; its code when
    there are no words for it."""
    pair = ACTIONS.get(action)
    if pair is None:
        return action
    return pair[1] if lang() == "en" else pair[0]


def signal_words(word: str) -> str:
    """A misuse signal's kind or an evidence key in the page's language; as stored when there are
    no words for it."""
    pair = SIGNALS.get(word)
    if pair is None:
        return word
    return pair[1] if lang() == "en" else pair[0]


def evidence_words(evidence: dict[str, Any]) -> list[tuple[str, str]]:
    """A signal's evidence as the pages show it: (its key in words, its value), in `SIGNALS`'s
    order (a key it does not know last); a place (`first`, `second`) on one line, each of its
    parts named; a time in China Standard Time."""

    def shown(key: str, v: Any) -> str:
        if isinstance(v, dict):
            return " · ".join(f"{signal_words(k)} {shown(k, x)}" for k, x in _ordered(v) if x is not None)
        return local(v) if key == "at" else str(v)

    return [(signal_words(k), shown(k, v)) for k, v in _ordered(evidence) if v is not None]


def _ordered(evidence: dict[str, Any]) -> list[tuple[str, Any]]:
    order = {k: i for i, k in enumerate(SIGNALS)}
    return sorted(evidence.items(), key=lambda kv: order.get(kv[0], len(order)))


def code_words(code: Code) -> str:
    return code.title_en if lang() == "en" else code.title_zh


def reason_words(reason: str | None) -> str:
    """A refused scan's reason in words: the Code table's title for a reason that is also a
    problem, ours for the others, the code itself for one we have no words for."""
    if reason is None:
        return ""
    try:
        return code_words(Code(reason))
    except ValueError:
        pair = REASONS.get(reason)
        return reason if pair is None else (pair[1] if lang() == "en" else pair[0])


# Times are shown as the holder's and the window's clock shows them: China Standard Time.
CST = timezone(timedelta(hours=8), "CST")


def local(at: datetime | float | str | None, *, day: bool = False) -> str:
    """A time (a datetime, an epoch, or ISO text) as `YYYY-MM-DD HH:MM` in China Standard Time
    (with `day`, the date alone)."""
    if at is None or at == "":
        return ""
    if isinstance(at, str):
        at = datetime.fromisoformat(at)
    elif not isinstance(at, datetime):
        at = datetime.fromtimestamp(at, timezone.utc)
    return at.astimezone(CST).strftime("%Y-%m-%d" if day else "%Y-%m-%d %H:%M")
