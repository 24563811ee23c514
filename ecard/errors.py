"""Every code the API answers with, as one table: a problem's `Code`, with its HTTP status and
titles in zh-CN and en, and a refused scan's `Reason`. The codes are the API's contract
(docs/api.md): never change one.

Domain functions raise `EcardError(Code.X, detail, **extra)`; they never build HTTP responses.
`ecard.api.problems` turns one into an RFC 9457 document with the code's status and titles,
and answers a status werkzeug raises that has no code here as `http.<status>`.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any


class Code(StrEnum):
    """A problem's stable `code`, with its HTTP `status`, `title_zh` and `title_en`. A member's
    name is its code in capitals, dots made underscores."""

    status: int
    title_zh: str
    title_en: str

    def __new__(cls, code: str, status: int, title_zh: str, title_en: str) -> Code:
        member = str.__new__(cls, code)
        member._value_ = code
        member.status, member.title_zh, member.title_en = status, title_zh, title_en
        return member

    # --- the request ------------------------------------------------------------------------------
    # data that breaks a rule: its schema, a NUL character, a body where none is taken
    VALIDATION_FAILED = "validation.failed", 422, "请求数据不合法", "Invalid request data"
    # a wrong format, check character or date, or a birth date in the future
    VALIDATION_ID_NUMBER = "validation.id_number", 422, "身份证号码不合法", "Invalid ID number"
    # a card number's format only, never whether the card exists
    VALIDATION_CARD_NO = "validation.card_no", 422, "社会保障卡卡号不合法", "Invalid card number"
    # a body that does not parse, and any other 400 werkzeug raises
    REQUEST_MALFORMED_JSON = (
        "request.malformed_json",
        400,
        "请求体不是合法的 JSON",
        "The request body is not valid JSON",
    )
    # a body sent as anything but application/json, and any other 415 werkzeug raises
    REQUEST_UNSUPPORTED_MEDIA_TYPE = (
        "request.unsupported_media_type",
        415,
        "不支持的内容类型",
        "Unsupported media type",
    )
    REQUEST_TOO_LARGE = "request.too_large", 413, "请求体过大", "Request body too large"
    # gunicorn's own refusals, before the app (ecard.api.worker); a broken chunked body also in ecard.api.edge
    REQUEST_MALFORMED = "request.malformed", 400, "请求格式错误", "Malformed HTTP request"
    REQUEST_MALFORMED_BODY = (
        "request.malformed_body",
        400,
        "请求体编码错误",
        "The request body's transfer encoding is malformed",
    )
    REQUEST_URI_TOO_LONG = "request.uri_too_long", 414, "请求地址过长", "URI too long"
    REQUEST_HEADERS_TOO_LARGE = (
        "request.headers_too_large",
        431,
        "请求头过大",
        "Request header fields too large",
    )
    # werkzeug's 404 and 405: no route for the URL, or not for this method
    NOT_FOUND = "not_found", 404, "资源不存在", "Not found"
    METHOD_NOT_ALLOWED = "method_not_allowed", 405, "不支持的请求方法", "Method not allowed"
    # an Idempotency-Key used in its scope for another request; or whose first request has no
    # stored answer (yet, or was not kept)
    IDEMPOTENCY_MISMATCH = (
        "idempotency.mismatch",
        422,
        "幂等键已用于不同的请求",
        "Idempotency key reused with a different request",
    )
    IDEMPOTENCY_IN_PROGRESS = (
        "idempotency.in_progress",
        409,
        "相同幂等键的请求正在处理",
        "A request with this idempotency key is in progress",
    )
    # `retry_after` becomes the Retry-After header
    RATE_LIMITED = "rate_limited", 429, "请求过于频繁", "Too many requests"
    # the database is unreachable or a statement failed; answered with Retry-After
    SERVICE_UNAVAILABLE = "service.unavailable", 503, "服务暂不可用", "Service temporarily unavailable"
    # an unexpected exception: the log has the traceback, the client only this
    INTERNAL = "internal", 500, "服务内部错误", "Internal error"

    # --- auth -------------------------------------------------------------------------------------
    # a token that does not verify, is of the wrong type or names no known principal type
    AUTH_INVALID_TOKEN = "auth.invalid_token", 401, "身份凭证无效", "Invalid token"
    AUTH_MISSING = "auth.missing", 401, "缺少身份凭证", "Missing credentials"
    AUTH_TOKEN_EXPIRED = "auth.token_expired", 401, "身份凭证已过期", "Token expired"
    # a token whose session ended (logout, refresh token reuse) or whose principal is gone
    AUTH_TOKEN_REVOKED = "auth.token_revoked", 401, "身份凭证已失效", "Token revoked"
    # a wrong operator or terminal name or secret, or an inactive account (which is not said)
    AUTH_BAD_CREDENTIALS = "auth.bad_credentials", 401, "用户名或密码错误", "Wrong credentials"
    # a token of another kind of principal (holder, operator, terminal) than the route takes
    AUTH_WRONG_PRINCIPAL = "auth.wrong_principal", 403, "无权访问", "This kind of account may not do this"
    AUTH_FORBIDDEN = "auth.forbidden", 403, "无权访问", "Forbidden"  # not raised; reserved in the contract

    # --- persons ----------------------------------------------------------------------------------
    PERSON_NOT_FOUND = "person.not_found", 404, "人员不存在", "Person not found"
    PERSON_EXISTS = "person.exists", 409, "该身份证号码已登记", "Person already registered"
    # no local household registration nor local insurance shown, or a document that does
    # not show the basis claimed
    PERSON_NOT_ELIGIBLE = (
        "person.not_eligible",
        422,
        "不符合社会保障卡申领条件",
        "Not eligible for a card here",
    )
    RELATION_EXISTS = "relation.exists", 409, "亲属关系已登记", "Relation already recorded"
    # a person as their own relative, or ages the wrong way round
    RELATION_INVALID = "relation.invalid", 422, "亲属关系不合法", "Invalid relation"

    # --- cards ------------------------------------------------------------------------------------
    CARD_NOT_FOUND = "card.not_found", 404, "社会保障卡不存在", "Card not found"
    # applying for a card (or a temporary one) for a person who holds a usable one; `card_no`
    CARD_EXISTS = "card.exists", 409, "该人员已有有效社会保障卡", "The person already has a live card"
    # an operation the card's status does not allow (issue, report lost, unhang, replace ...)
    CARD_BAD_STATE = (
        "card.bad_state",
        409,
        "社会保障卡状态不允许此操作",
        "The card's state does not allow this",
    )
    # why a card cannot be used (`cards.unusable_reason`); a replaced one names `successor_card_no`
    CARD_LOST = "card.lost", 409, "社会保障卡已挂失", "The card is reported lost"
    CARD_FROZEN = "card.frozen", 409, "社会保障卡已冻结", "The card is frozen"
    CARD_CANCELLED = "card.cancelled", 409, "社会保障卡已注销", "The card is cancelled"
    CARD_EXPIRED = "card.expired", 409, "社会保障卡已过期", "The card has expired"
    CARD_REPLACED = "card.replaced", 409, "社会保障卡已补换", "The card was replaced by a new one"
    CARD_NOT_ISSUED = "card.not_issued", 409, "社会保障卡尚未发放", "The card has not been issued"
    CARD_REISSUE_REQUIRES_FORMAL_LOSS = (
        "card.reissue_requires_formal_loss",
        409,
        "补领前须先办理正式挂失",
        "A reissue needs a formal loss report first",
    )
    # withdrawing a loss after a reissue, or a formal loss anywhere but a service window
    CARD_UNHANG_REFUSED = "card.unhang_refused", 409, "该挂失不能解除", "This loss report cannot be withdrawn"
    # a death or a missing person is reported by a guardian or a household member, not
    # the holder; anyone but the holder must be on record as the holder's guardian (a guardian
    # or a parent) or household member (a relation shown by the household register)
    CANCELLATION_REQUESTER = (
        "cancellation.requester",
        422,
        "申请人无权办理该注销",
        "This person may not ask for this cancellation",
    )
    # a death or a missing person needs its proof (a death certificate, a court's judgment)
    CANCELLATION_PROOF_REQUIRED = (
        "cancellation.proof_required",
        422,
        "请提供有效证明",
        "The proof for this cancellation is missing or of the wrong kind",
    )

    # --- PIN --------------------------------------------------------------------------------------
    # not 6 digits, one repeated digit, a straight run or the birth date
    PIN_WEAK = "pin.weak", 422, "密码过于简单", "The PIN is too weak"
    # the failure is kept (`commit_state`); `tries_left`
    PIN_WRONG = "pin.wrong", 401, "密码错误", "Wrong PIN"
    PIN_LOCKED = (
        "pin.locked",
        423,
        "密码已锁定，请到服务网点解锁",
        "The PIN is locked; unlock it at a service window",
    )

    # --- electronic card --------------------------------------------------------------------------
    # no code is issued while the card behind the e-card is unusable; `reason` is that card's code
    ECARD_SUSPENDED = "ecard.suspended", 409, "电子社保卡已暂停使用", "The electronic card is suspended"
    ECARD_NOT_FOUND = "ecard.not_found", 404, "电子社保卡不存在", "Electronic card not found"  # reserved
    # not 6 digits, or one the PIN rules refuse
    ECARD_PASSWORD_WEAK = (
        "ecard.password_weak",
        422,
        "电子社保卡密码过于简单",
        "The electronic card password is too weak",
    )
    # a code that can pay needs this channel's payment window open, or a password set first
    ECARD_PASSWORD_REQUIRED = (
        "ecard.password_required",
        403,
        "请先输入电子社保卡密码",
        "Enter the electronic card password first",
    )
    # the failure is kept (`commit_state`); `tries_left` before the lock
    ECARD_PASSWORD_WRONG = "ecard.password_wrong", 403, "电子社保卡密码错误", "Wrong electronic card password"
    # locked for `retry_after` seconds (the Retry-After header); the PIN sets a new one meanwhile
    ECARD_PASSWORD_LOCKED = (
        "ecard.password_locked",
        423,
        "电子社保卡密码已锁定",
        "The electronic card password is locked",
    )
    # a window's reset of an e-card password where none is set
    ECARD_NO_PASSWORD = (
        "ecard.no_password",
        409,
        "电子社保卡未设置密码",
        "The electronic card has no password",
    )
    # ID number, name and card number do not name one card (an unknown card number too)
    ECARD_IDENTITY_MISMATCH = (
        "ecard.identity_mismatch",
        401,
        "身份信息与社会保障卡不符",
        "The identity does not match the card",
    )
    BINDING_NOT_FOUND = "binding.not_found", 404, "渠道绑定不存在", "Channel binding not found"

    # --- device keys (R-51, `ED1:` codes) ---------------------------------------------------------
    # not a point of the curve the `alg` names, or not 65 bytes uncompressed
    DEVICE_BAD_KEY = "device.bad_key", 422, "设备公钥无效", "Not a public key of that algorithm"
    # the proof is not the key's signature over this access token's id (`jti`)
    DEVICE_BAD_PROOF = (
        "device.bad_proof",
        422,
        "设备密钥持有证明无效",
        "The proof of possession does not verify",
    )
    # no active device key of that id held by this channel binding
    DEVICE_NOT_FOUND = "device.not_found", 404, "设备密钥不存在或已撤销", "Device key not found or revoked"

    # --- merchants and operators ------------------------------------------------------------------
    MERCHANT_NOT_FOUND = "merchant.not_found", 404, "商户不存在", "Merchant not found"
    TERMINAL_NOT_FOUND = "terminal.not_found", 404, "终端不存在", "Terminal not found"
    TERMINAL_NOT_OFFLINE_CAPABLE = (
        "terminal.not_offline_capable",
        403,
        "该终端未登记为离线终端",
        "This terminal is not registered to upload offline records",
    )
    OPERATOR_EXISTS = "operator.exists", 409, "操作员已存在", "Operator already exists"

    # --- family proxies ---------------------------------------------------------------------------
    # a family binding that does not exist or that the caller is not party to
    PROXY_NOT_FOUND = "proxy.not_found", 404, "亲情绑定不存在", "Family binding not found"
    PROXY_EXISTS = "proxy.exists", 409, "已绑定该亲属", "Already bound to this relative"
    # binding a minor without being their parent, grandparent or guardian on record
    PROXY_RELATION_REQUIRED = (
        "proxy.relation_required",
        403,
        "未登记符合条件的亲属关系",
        "No qualifying family relation on record",
    )
    # `end_reason` says why
    PROXY_ENDED = "proxy.ended", 409, "亲情绑定已结束", "The family binding has ended"
    # `limit` is ECARD_MAX_DEPENDANTS, ECARD_MAX_PROXIES
    PROXY_TOO_MANY_DEPENDANTS = (
        "proxy.too_many_dependants",
        409,
        "代管人数已达上限",
        "This relative already manages the most dependants allowed",
    )
    PROXY_TOO_MANY_PROXIES = (
        "proxy.too_many_proxies",
        409,
        "该人员的代管亲属已达上限",
        "This person already has the most proxies allowed",
    )
    # an adult is bound with their consent code, made by them, within its lifetime, used once
    CONSENT_REQUIRED = (
        "consent.required",
        422,
        "绑定成年人须提供其授权码",
        "Binding an adult needs their consent code",
    )
    CONSENT_INVALID = "consent.invalid", 422, "授权码无效", "Invalid consent code"
    CONSENT_EXPIRED = "consent.expired", 422, "授权码已过期", "The consent code has expired"
    CONSENT_USED = "consent.used", 422, "授权码已使用", "The consent code was already used"
    PROXY_SELF = "proxy.self", 422, "不能绑定本人", "You cannot be your own proxy"
    # the proxy holds no usable card of their own; `reason` is that card's code
    PROXY_OWN_CARD_UNUSABLE = (
        "proxy.own_card_unusable",
        403,
        "您本人的社会保障卡当前不可用，不能代办亲属业务",
        "Your own card is not usable, so you cannot act for a relative",
    )
    # a minor's own binding ends at 16, or at a service window
    PROXY_MINOR_CANNOT_REVOKE = (
        "proxy.minor_cannot_revoke",
        403,
        "未成年人的亲情绑定满16周岁自动解除，或到服务网点解除",
        "A minor's family binding ends at 16, or at a service window",
    )

    # --- the federation: a peer region's call to judge one of our cards --------------------
    # no call token, or one that is not a member's, not for us, expired, or not for this body
    FEDERATION_UNAUTHORIZED = (
        "federation.unauthorized",
        401,
        "联盟调用未通过认证",
        "The call is not a federation member's",
    )
    # a call token already taken: a captured call sent again
    FEDERATION_CALL_REPLAYED = (
        "federation.call_replayed",
        401,
        "联盟调用已处理，不能重放",
        "This call was already taken",
    )
    # this deployment belongs to no federation
    FEDERATION_NONE = "federation.none", 404, "本地区未加入区域联盟", "This region is in no federation"

    # --- chip -------------------------------------------------------------------------------------
    CHIP_KEYS_MISSING = (
        "chip.keys_missing",
        409,
        "该卡尚未个人化",
        "The card has not been personalized",
    )  # reserved


class Reason(StrEnum):
    """Why a scan was refused: the `reason` of a decision, stored with it and shown in usage."""

    # the code itself (the first eight are `qr`'s own errors' codes)
    QR_MALFORMED = "qr.malformed"
    QR_BAD_SIGNATURE = "qr.bad_signature"  # also: an offline phone code of no live binding
    QR_EXPIRED = "qr.expired"
    QR_NOT_YET_VALID = "qr.not_yet_valid"
    QR_WRONG_SCENE = "qr.wrong_scene"
    QR_UNKNOWN_KEY = "qr.unknown_key"
    QR_TOTP_INVALID = "qr.totp_invalid"
    QR_REPLAYED = "qr.replayed"
    QR_SCENE_REQUIRED = "qr.scene_required"
    # an `ED1:` code of a device credential revoked (the card stopped being live, the phone lost)
    QR_CREDENTIAL_REVOKED = "qr.credential_revoked"
    QR_IDENTITY_CODE_REQUIRED = "qr.identity_code_required"
    QR_TOO_MANY_ATTEMPTS = "qr.too_many_attempts"
    # the card (`cards.unusable_reason`), the family binding and the e-card's password (R-45: an
    # offline phone code cannot pay past it): the problems' own codes, so a client reads one word
    CARD_LOST = Code.CARD_LOST
    CARD_FROZEN = Code.CARD_FROZEN
    CARD_CANCELLED = Code.CARD_CANCELLED
    CARD_EXPIRED = Code.CARD_EXPIRED
    CARD_REPLACED = Code.CARD_REPLACED
    CARD_NOT_ISSUED = Code.CARD_NOT_ISSUED
    PROXY_ENDED = Code.PROXY_ENDED
    PROXY_OWN_CARD_UNUSABLE = Code.PROXY_OWN_CARD_UNUSABLE
    ECARD_PASSWORD_REQUIRED = Code.ECARD_PASSWORD_REQUIRED
    # offline records
    OFFLINE_BAD_SCAN_TIME = "offline.bad_scan_time"
    OFFLINE_JUDGED_ONLINE = "offline.judged_online"
    # chip reads
    CHIP_BAD_CHALLENGE = "chip.bad_challenge"
    CHIP_WRONG_SCENE = "chip.wrong_scene"
    CHIP_SCENE_REQUIRED = "chip.scene_required"
    CHIP_UNKNOWN_CARD = "chip.unknown_card"
    CHIP_BAD_CRYPTOGRAM = "chip.bad_cryptogram"
    CHIP_REPLAYED = "chip.replayed"
    CHIP_PIN_REQUIRED = "chip.pin_required"
    # another member's card: its region did not answer in time, or answered with what does
    # not parse or is not signed by its root; nothing was used
    FEDERATION_ISSUER_UNAVAILABLE = "federation.issuer_unavailable"


class EcardError(Exception):
    """A refusal: its `code` (status and titles from the table), a `detail` in en and optionally
    zh-CN, and `extra` problem members (`errors`, `tries_left`, `reason`, `retry_after` ...).
    `commit_state` asks for the state changed before the refusal to be kept (a wrong PIN counts)."""

    def __init__(
        self, code: Code, detail: str | None = None, detail_zh: str | None = None, **extra: Any
    ) -> None:
        super().__init__(detail or code.title_en)
        self.code = code
        self.detail = detail
        self.detail_zh = detail_zh
        self.commit_state = bool(extra.pop("commit_state", False))
        self.extra = extra


class TokenRevoked(EcardError):
    """`auth.token_revoked`, a class of its own because `auth.use_refresh_token` catches it, to
    tell a reused refresh token (which ends its whole session) from one whose session had ended."""

    def __init__(self, detail: str | None = None, **extra: Any) -> None:
        super().__init__(Code.AUTH_TOKEN_REVOKED, detail, **extra)
