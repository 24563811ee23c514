"""One error tree. Each leaf names a condition and carries a stable `code`, an HTTP status and
titles in zh-CN and en; `ecard.api.problems` turns any of them into an RFC 9457 document.

Domain functions raise these; they never build HTTP responses.
"""

from __future__ import annotations

from typing import Any, ClassVar


class EcardError(Exception):
    code: ClassVar[str] = "error"
    status: ClassVar[int] = 400
    title_zh: ClassVar[str] = "请求错误"
    title_en: ClassVar[str] = "Bad request"

    def __init__(self, detail_en: str | None = None, detail_zh: str | None = None,
                 **extra: Any) -> None:
        super().__init__(detail_en or self.title_en)
        self.detail_en = detail_en
        self.detail_zh = detail_zh
        # True when the state changed before the refusal must be kept (a wrong PIN counts).
        self.commit_state = bool(extra.pop("commit_state", False))
        self.extra = extra  # extra problem members, e.g. `errors` or `tries_left`


def _leaf(name: str, base: type[EcardError], code: str, status: int, zh: str, en: str) -> type[EcardError]:
    return type(name, (base,), {"code": code, "status": status, "title_zh": zh, "title_en": en})


# --- request and validation -------------------------------------------------------------------
class ValidationFailed(EcardError):
    code, status, title_zh, title_en = "validation.failed", 422, "请求数据不合法", "Invalid request data"


InvalidIdNumber = _leaf("InvalidIdNumber", ValidationFailed, "validation.id_number", 422,
                        "身份证号码不合法", "Invalid ID number")
InvalidCardNo = _leaf("InvalidCardNo", ValidationFailed, "validation.card_no", 422,
                      "社会保障卡卡号不合法", "Invalid card number")
MalformedJson = _leaf("MalformedJson", EcardError, "request.malformed_json", 400,
                      "请求体不是合法的 JSON", "The request body is not valid JSON")
UnsupportedMediaType = _leaf("UnsupportedMediaType", EcardError, "request.unsupported_media_type",
                             415, "不支持的内容类型", "Unsupported media type")
BodyTooLarge = _leaf("BodyTooLarge", EcardError, "request.too_large", 413,
                     "请求体过大", "Request body too large")
# Refused by the HTTP server before the app sees the request (gunicorn.conf.py, ecard.worker), or
# while the app reads a chunked body (ecard.edge).
MalformedRequest = _leaf("MalformedRequest", EcardError, "request.malformed", 400,
                         "请求格式错误", "Malformed HTTP request")
MalformedBody = _leaf("MalformedBody", EcardError, "request.malformed_body", 400,
                      "请求体编码错误", "The request body's transfer encoding is malformed")
UriTooLong = _leaf("UriTooLong", EcardError, "request.uri_too_long", 414, "请求地址过长", "URI too long")
HeadersTooLarge = _leaf("HeadersTooLarge", EcardError, "request.headers_too_large", 431,
                        "请求头过大", "Request header fields too large")
NotFound = _leaf("NotFound", EcardError, "not_found", 404, "资源不存在", "Not found")
MethodNotAllowed = _leaf("MethodNotAllowed", EcardError, "method_not_allowed", 405,
                         "不支持的请求方法", "Method not allowed")
IdempotencyMismatch = _leaf("IdempotencyMismatch", EcardError, "idempotency.mismatch", 422,
                            "幂等键已用于不同的请求", "Idempotency key reused with a different request")
IdempotencyInProgress = _leaf("IdempotencyInProgress", EcardError, "idempotency.in_progress", 409,
                              "相同幂等键的请求正在处理", "A request with this idempotency key is in progress")
RateLimited = _leaf("RateLimited", EcardError, "rate_limited", 429, "请求过于频繁", "Too many requests")
Unavailable = _leaf("Unavailable", EcardError, "service.unavailable", 503,
                    "服务暂不可用", "Service temporarily unavailable")

# --- auth ---------------------------------------------------------------------------------------
class AuthError(EcardError):
    code, status, title_zh, title_en = "auth.invalid_token", 401, "身份凭证无效", "Invalid token"


AuthMissing = _leaf("AuthMissing", AuthError, "auth.missing", 401, "缺少身份凭证", "Missing credentials")
TokenExpired = _leaf("TokenExpired", AuthError, "auth.token_expired", 401, "身份凭证已过期", "Token expired")
TokenRevoked = _leaf("TokenRevoked", AuthError, "auth.token_revoked", 401, "身份凭证已失效", "Token revoked")
BadCredentials = _leaf("BadCredentials", AuthError, "auth.bad_credentials", 401,
                       "用户名或密码错误", "Wrong credentials")
WrongPrincipal = _leaf("WrongPrincipal", AuthError, "auth.wrong_principal", 403,
                       "无权访问", "This kind of account may not do this")
Forbidden = _leaf("Forbidden", AuthError, "auth.forbidden", 403, "无权访问", "Forbidden")

# --- persons ------------------------------------------------------------------------------------
class PersonError(EcardError):
    code, status, title_zh, title_en = "person.error", 409, "人员信息错误", "Person error"


PersonNotFound = _leaf("PersonNotFound", PersonError, "person.not_found", 404, "人员不存在", "Person not found")
PersonExists = _leaf("PersonExists", PersonError, "person.exists", 409, "该身份证号码已登记", "Person already registered")
RelationExists = _leaf("RelationExists", PersonError, "relation.exists", 409, "亲属关系已登记", "Relation already recorded")
RelationInvalid = _leaf("RelationInvalid", PersonError, "relation.invalid", 422, "亲属关系不合法", "Invalid relation")

# --- cards --------------------------------------------------------------------------------------
class CardError(EcardError):
    code, status, title_zh, title_en = "card.error", 409, "社会保障卡状态不允许此操作", "The card's state does not allow this"


CardNotFound = _leaf("CardNotFound", CardError, "card.not_found", 404, "社会保障卡不存在", "Card not found")
CardExists = _leaf("CardExists", CardError, "card.exists", 409, "该人员已有有效社会保障卡", "The person already has a live card")
CardBadState = _leaf("CardBadState", CardError, "card.bad_state", 409,
                     "社会保障卡状态不允许此操作", "The card's state does not allow this")
CardLost = _leaf("CardLost", CardError, "card.lost", 409, "社会保障卡已挂失", "The card is reported lost")
CardFrozen = _leaf("CardFrozen", CardError, "card.frozen", 409, "社会保障卡已冻结", "The card is frozen")
CardCancelled = _leaf("CardCancelled", CardError, "card.cancelled", 409, "社会保障卡已注销", "The card is cancelled")
CardExpired = _leaf("CardExpired", CardError, "card.expired", 409, "社会保障卡已过期", "The card has expired")
CardReplaced = _leaf("CardReplaced", CardError, "card.replaced", 409, "社会保障卡已补换", "The card was replaced by a new one")
CardNotIssued = _leaf("CardNotIssued", CardError, "card.not_issued", 409, "社会保障卡尚未发放", "The card has not been issued")
ReissueRefused = _leaf("ReissueRefused", CardError, "card.reissue_requires_formal_loss", 409,
                       "补领前须先办理正式挂失", "A reissue needs a formal loss report first")
UnhangRefused = _leaf("UnhangRefused", CardError, "card.unhang_refused", 409,
                      "该挂失不能解除", "This loss report cannot be withdrawn")

# --- PIN ----------------------------------------------------------------------------------------
class PinError(EcardError):
    code, status, title_zh, title_en = "pin.error", 422, "密码错误", "PIN error"


WeakPin = _leaf("WeakPin", PinError, "pin.weak", 422, "密码过于简单", "The PIN is too weak")
WrongPin = _leaf("WrongPin", PinError, "pin.wrong", 401, "密码错误", "Wrong PIN")
PinLocked = _leaf("PinLocked", PinError, "pin.locked", 423, "密码已锁定，请到服务网点解锁",
                  "The PIN is locked; unlock it at a service window")

# --- electronic card ----------------------------------------------------------------------------
class EcardStateError(EcardError):
    code, status, title_zh, title_en = "ecard.error", 409, "电子社保卡状态错误", "Electronic card error"


EcardSuspended = _leaf("EcardSuspended", EcardStateError, "ecard.suspended", 409,
                       "电子社保卡已暂停使用", "The electronic card is suspended")
EcardNotFound = _leaf("EcardNotFound", EcardStateError, "ecard.not_found", 404,
                      "电子社保卡不存在", "Electronic card not found")
IdentityMismatch = _leaf("IdentityMismatch", EcardStateError, "ecard.identity_mismatch", 401,
                         "身份信息与社会保障卡不符", "The identity does not match the card")
BindingNotFound = _leaf("BindingNotFound", EcardStateError, "binding.not_found", 404,
                        "渠道绑定不存在", "Channel binding not found")

# --- merchants ----------------------------------------------------------------------------------
MerchantNotFound = _leaf("MerchantNotFound", EcardError, "merchant.not_found", 404, "商户不存在", "Merchant not found")
TerminalNotOfflineCapable = _leaf("TerminalNotOfflineCapable", AuthError, "terminal.not_offline_capable", 403,
                                  "该终端未登记为离线终端", "This terminal is not registered to upload offline records")
OperatorExists = _leaf("OperatorExists", EcardError, "operator.exists", 409, "操作员已存在", "Operator already exists")

# --- family proxies -----------------------------------------------------------------------------
class ProxyError(EcardError):
    code, status, title_zh, title_en = "proxy.error", 409, "亲情服务错误", "Family proxy error"


ProxyNotFound = _leaf("ProxyNotFound", ProxyError, "proxy.not_found", 404, "亲情绑定不存在", "Family binding not found")
ProxyExists = _leaf("ProxyExists", ProxyError, "proxy.exists", 409, "已绑定该亲属", "Already bound to this relative")
ProxyNotAllowed = _leaf("ProxyNotAllowed", ProxyError, "proxy.relation_required", 403,
                        "未登记符合条件的亲属关系", "No qualifying family relation on record")
ProxyEnded = _leaf("ProxyEnded", ProxyError, "proxy.ended", 409, "亲情绑定已结束", "The family binding has ended")
TooManyDependants = _leaf("TooManyDependants", ProxyError, "proxy.too_many_dependants", 409,
                          "代管人数已达上限", "This relative already manages the most dependants allowed")
TooManyProxies = _leaf("TooManyProxies", ProxyError, "proxy.too_many_proxies", 409,
                       "该人员的代管亲属已达上限", "This person already has the most proxies allowed")
ConsentRequired = _leaf("ConsentRequired", ProxyError, "consent.required", 422,
                        "绑定成年人须提供其授权码", "Binding an adult needs their consent code")
ConsentInvalid = _leaf("ConsentInvalid", ProxyError, "consent.invalid", 422, "授权码无效", "Invalid consent code")
ConsentExpired = _leaf("ConsentExpired", ProxyError, "consent.expired", 422, "授权码已过期", "The consent code has expired")
ConsentUsed = _leaf("ConsentUsed", ProxyError, "consent.used", 422, "授权码已使用", "The consent code was already used")
SelfBinding = _leaf("SelfBinding", ProxyError, "proxy.self", 422, "不能绑定本人", "You cannot be your own proxy")
ProxyCardUnusable = _leaf("ProxyCardUnusable", ProxyError, "proxy.own_card_unusable", 403,
                          "您本人的社会保障卡当前不可用，不能代办亲属业务",
                          "Your own card is not usable, so you cannot act for a relative")
MinorCannotRevoke = _leaf("MinorCannotRevoke", ProxyError, "proxy.minor_cannot_revoke", 403,
                          "未成年人的亲情绑定满16周岁自动解除，或到服务网点解除",
                          "A minor's family binding ends at 16, or at a service window")

ChipKeysMissing = _leaf("ChipKeysMissing", EcardError, "chip.keys_missing", 409,
                        "该卡尚未个人化", "The card has not been personalized")
