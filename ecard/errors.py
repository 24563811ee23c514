"""One error tree. Every class names a condition and carries, as class attributes, a stable
`code`, an HTTP status and titles in zh-CN and en; `ecard.api.problems` turns any of them into an
RFC 9457 document. The codes are the API's contract (docs/api.md): never change one.

Domain functions raise these; they never build HTTP responses. Two are raised only by
`ecard.api.problems`: `HttpError`, for a status werkzeug raises that has no class here (its
instance carries the status, and the code `http.<status>`), and `Internal`, for an unexpected
exception.
"""

from __future__ import annotations

from typing import Any


class EcardError(Exception):
    """Base of every error the API answers with a problem document; not raised itself."""

    # Class attributes, read through the instance; only HttpError sets them per instance.
    code: str = "error"
    status: int = 400
    title_zh: str = "请求错误"
    title_en: str = "Bad request"

    def __init__(self, detail_en: str | None = None, detail_zh: str | None = None,
                 **extra: Any) -> None:
        super().__init__(detail_en or self.title_en)
        self.detail_en = detail_en
        self.detail_zh = detail_zh
        # True when the state changed before the refusal must be kept (a wrong PIN counts).
        self.commit_state = bool(extra.pop("commit_state", False))
        self.extra = extra  # extra problem members, e.g. `errors` or `tries_left`


# --- request and validation -------------------------------------------------------------------
class ValidationFailed(EcardError):
    """Request data that breaks a rule (its schema, a NUL character, a body where none is taken)."""

    code = "validation.failed"
    status = 422
    title_zh = "请求数据不合法"
    title_en = "Invalid request data"


class InvalidIdNumber(ValidationFailed):
    """An ID number with a wrong format, check character or date, or a birth date in the future."""

    code = "validation.id_number"
    status = 422
    title_zh = "身份证号码不合法"
    title_en = "Invalid ID number"


class InvalidCardNo(ValidationFailed):
    """A card number whose format is wrong (its format only, never whether the card exists)."""

    code = "validation.card_no"
    status = 422
    title_zh = "社会保障卡卡号不合法"
    title_en = "Invalid card number"


class MalformedJson(EcardError):
    """A JSON body that does not parse, and any other 400 werkzeug raises."""

    code = "request.malformed_json"
    status = 400
    title_zh = "请求体不是合法的 JSON"
    title_en = "The request body is not valid JSON"


class UnsupportedMediaType(EcardError):
    """A body sent as anything but application/json, and any other 415 werkzeug raises."""

    code = "request.unsupported_media_type"
    status = 415
    title_zh = "不支持的内容类型"
    title_en = "Unsupported media type"


class BodyTooLarge(EcardError):
    """A body over MAX_CONTENT_LENGTH (werkzeug's 413)."""

    code = "request.too_large"
    status = 413
    title_zh = "请求体过大"
    title_en = "Request body too large"


class MalformedRequest(EcardError):
    """A request line or header gunicorn cannot parse, refused before the app (ecard.api.worker)."""

    code = "request.malformed"
    status = 400
    title_zh = "请求格式错误"
    title_en = "Malformed HTTP request"


class MalformedBody(EcardError):
    """A chunked body whose encoding is broken or cut short (ecard.api.edge, ecard.api.worker)."""

    code = "request.malformed_body"
    status = 400
    title_zh = "请求体编码错误"
    title_en = "The request body's transfer encoding is malformed"


class UriTooLong(EcardError):
    """A request line over gunicorn's limit_request_line, refused before the app (ecard.api.worker)."""

    code = "request.uri_too_long"
    status = 414
    title_zh = "请求地址过长"
    title_en = "URI too long"


class HeadersTooLarge(EcardError):
    """Header fields over gunicorn's limits, refused before the app (ecard.api.worker)."""

    code = "request.headers_too_large"
    status = 431
    title_zh = "请求头过大"
    title_en = "Request header fields too large"


class NotFound(EcardError):
    """No route matches the URL (werkzeug's 404)."""

    code = "not_found"
    status = 404
    title_zh = "资源不存在"
    title_en = "Not found"


class MethodNotAllowed(EcardError):
    """The route exists, but not for this method (werkzeug's 405)."""

    code = "method_not_allowed"
    status = 405
    title_zh = "不支持的请求方法"
    title_en = "Method not allowed"


class IdempotencyMismatch(EcardError):
    """An Idempotency-Key already used in this scope for a different request."""

    code = "idempotency.mismatch"
    status = 422
    title_zh = "幂等键已用于不同的请求"
    title_en = "Idempotency key reused with a different request"


class IdempotencyInProgress(EcardError):
    """An Idempotency-Key whose first request has no stored answer (yet, or was not kept)."""

    code = "idempotency.in_progress"
    status = 409
    title_zh = "相同幂等键的请求正在处理"
    title_en = "A request with this idempotency key is in progress"


class RateLimited(EcardError):
    """A limit of ecard.api.limits is reached; `retry_after` becomes the Retry-After header."""

    code = "rate_limited"
    status = 429
    title_zh = "请求过于频繁"
    title_en = "Too many requests"


class Unavailable(EcardError):
    """The database is unreachable or a statement failed; answered with Retry-After."""

    code = "service.unavailable"
    status = 503
    title_zh = "服务暂不可用"
    title_en = "Service temporarily unavailable"


class HttpError(EcardError):
    """An HTTP error werkzeug raised that has no class here; the instance carries its status."""

    # Placeholders: an instance answers with `http.<status>` and werkzeug's name as both titles.
    code = "http.error"
    status = 500
    title_zh = "HTTP 错误"
    title_en = "HTTP error"

    def __init__(self, status: int, title: str) -> None:
        self.code = f"http.{status}"
        self.status = status
        self.title_zh = self.title_en = title
        super().__init__()


class Internal(EcardError):
    """An unexpected exception: the log has the traceback, the client only this."""

    code = "internal"
    status = 500
    title_zh = "服务内部错误"
    title_en = "Internal error"


# --- auth ---------------------------------------------------------------------------------------
class AuthError(EcardError):
    """A bearer token that does not verify, is of the wrong type or names no known principal type."""

    code = "auth.invalid_token"
    status = 401
    title_zh = "身份凭证无效"
    title_en = "Invalid token"


class AuthMissing(AuthError):
    """No `Authorization: Bearer` token on a route that needs one."""

    code = "auth.missing"
    status = 401
    title_zh = "缺少身份凭证"
    title_en = "Missing credentials"


class TokenExpired(AuthError):
    """A token past its `exp` (plus the leeway)."""

    code = "auth.token_expired"
    status = 401
    title_zh = "身份凭证已过期"
    title_en = "Token expired"


class TokenRevoked(AuthError):
    """A token whose session ended (logout, refresh token reuse) or whose principal is gone."""

    code = "auth.token_revoked"
    status = 401
    title_zh = "身份凭证已失效"
    title_en = "Token revoked"


class BadCredentials(AuthError):
    """A wrong operator or terminal name or secret, or an inactive account (which is not said)."""

    code = "auth.bad_credentials"
    status = 401
    title_zh = "用户名或密码错误"
    title_en = "Wrong credentials"


class WrongPrincipal(AuthError):
    """A token of another kind of principal (holder, operator, terminal) than the route takes."""

    code = "auth.wrong_principal"
    status = 403
    title_zh = "无权访问"
    title_en = "This kind of account may not do this"


class Forbidden(AuthError):
    """Not raised at present; its code stays reserved in the contract."""

    code = "auth.forbidden"
    status = 403
    title_zh = "无权访问"
    title_en = "Forbidden"


# --- persons ------------------------------------------------------------------------------------
class PersonError(EcardError):
    """Base of the person and relation errors; not raised itself."""

    code = "person.error"
    status = 409
    title_zh = "人员信息错误"
    title_en = "Person error"


class PersonNotFound(PersonError):
    """No person with this id."""

    code = "person.not_found"
    status = 404
    title_zh = "人员不存在"
    title_en = "Person not found"


class PersonExists(PersonError):
    """Registering an ID number that is already registered."""

    code = "person.exists"
    status = 409
    title_zh = "该身份证号码已登记"
    title_en = "Person already registered"


class RelationExists(PersonError):
    """Recording a family relation that is already on record."""

    code = "relation.exists"
    status = 409
    title_zh = "亲属关系已登记"
    title_en = "Relation already recorded"


class RelationInvalid(PersonError):
    """A relation that cannot be: a person to themself, or ages the wrong way round."""

    code = "relation.invalid"
    status = 422
    title_zh = "亲属关系不合法"
    title_en = "Invalid relation"


# --- cards --------------------------------------------------------------------------------------
class CardError(EcardError):
    """Base of the card errors (`cards.unusable_reason` returns their codes); not raised itself."""

    code = "card.error"
    status = 409
    title_zh = "社会保障卡状态不允许此操作"
    title_en = "The card's state does not allow this"


class CardNotFound(CardError):
    """No card with this card number."""

    code = "card.not_found"
    status = 404
    title_zh = "社会保障卡不存在"
    title_en = "Card not found"


class CardExists(CardError):
    """Applying for a card (or a temporary one) for a person who holds a usable one."""

    code = "card.exists"
    status = 409
    title_zh = "该人员已有有效社会保障卡"
    title_en = "The person already has a live card"


class CardBadState(CardError):
    """An operation the card's status does not allow (issue, report lost, unhang, replace ...)."""

    code = "card.bad_state"
    status = 409
    title_zh = "社会保障卡状态不允许此操作"
    title_en = "The card's state does not allow this"


class CardLost(CardError):
    """The card is reported lost, temporarily or formally."""

    code = "card.lost"
    status = 409
    title_zh = "社会保障卡已挂失"
    title_en = "The card is reported lost"


class CardFrozen(CardError):
    """The card is frozen."""

    code = "card.frozen"
    status = 409
    title_zh = "社会保障卡已冻结"
    title_en = "The card is frozen"


class CardCancelled(CardError):
    """The card is cancelled."""

    code = "card.cancelled"
    status = 409
    title_zh = "社会保障卡已注销"
    title_en = "The card is cancelled"


class CardExpired(CardError):
    """The card has expired."""

    code = "card.expired"
    status = 409
    title_zh = "社会保障卡已过期"
    title_en = "The card has expired"


class CardReplaced(CardError):
    """The card was reissued or replaced; `successor_card_no` names the new one."""

    code = "card.replaced"
    status = 409
    title_zh = "社会保障卡已补换"
    title_en = "The card was replaced by a new one"


class CardNotIssued(CardError):
    """The card is applied for but not issued yet (so not usable, nor to be personalized)."""

    code = "card.not_issued"
    status = 409
    title_zh = "社会保障卡尚未发放"
    title_en = "The card has not been issued"


class ReissueRefused(CardError):
    """A reissue of a card that is not formally reported lost."""

    code = "card.reissue_requires_formal_loss"
    status = 409
    title_zh = "补领前须先办理正式挂失"
    title_en = "A reissue needs a formal loss report first"


class UnhangRefused(CardError):
    """Withdrawing a loss after a reissue, or a formal loss anywhere but a service window."""

    code = "card.unhang_refused"
    status = 409
    title_zh = "该挂失不能解除"
    title_en = "This loss report cannot be withdrawn"


# --- PIN ----------------------------------------------------------------------------------------
class PinError(EcardError):
    """Base of the PIN errors; not raised itself."""

    code = "pin.error"
    status = 422
    title_zh = "密码错误"
    title_en = "PIN error"


class WeakPin(PinError):
    """A new PIN that is not 6 digits, or is one repeated digit, a straight run or the birth date."""

    code = "pin.weak"
    status = 422
    title_zh = "密码过于简单"
    title_en = "The PIN is too weak"


class WrongPin(PinError):
    """A wrong PIN; the failure is kept (`commit_state`) and `tries_left` says how many remain."""

    code = "pin.wrong"
    status = 401
    title_zh = "密码错误"
    title_en = "Wrong PIN"


class PinLocked(PinError):
    """Too many wrong PINs in a row: the PIN is locked until unlocked at a service window."""

    code = "pin.locked"
    status = 423
    title_zh = "密码已锁定，请到服务网点解锁"
    title_en = "The PIN is locked; unlock it at a service window"


# --- electronic card ----------------------------------------------------------------------------
class EcardStateError(EcardError):
    """Base of the electronic card errors; not raised itself."""

    code = "ecard.error"
    status = 409
    title_zh = "电子社保卡状态错误"
    title_en = "Electronic card error"


class EcardSuspended(EcardStateError):
    """No code is issued: the card behind the e-card is unusable; `reason` is that card's code."""

    code = "ecard.suspended"
    status = 409
    title_zh = "电子社保卡已暂停使用"
    title_en = "The electronic card is suspended"


class EcardNotFound(EcardStateError):
    """Not raised at present; its code stays reserved in the contract."""

    code = "ecard.not_found"
    status = 404
    title_zh = "电子社保卡不存在"
    title_en = "Electronic card not found"


class EcardPasswordWeak(EcardStateError):
    """A new e-card password that is not 6 digits, or is one the PIN rules refuse (R-31, R-45)."""

    code = "ecard.password_weak"
    status = 422
    title_zh = "电子社保卡密码过于简单"
    title_en = "The electronic card password is too weak"


class EcardPasswordRequired(EcardStateError):
    """A code that can pay (clinic, or universal) needs this channel's payment window open
    (`POST /me/ecard/unlock`), or a password set first where one is required (R-45)."""

    code = "ecard.password_required"
    status = 403
    title_zh = "请先输入电子社保卡密码"
    title_en = "Enter the electronic card password first"


class EcardPasswordWrong(EcardStateError):
    """A wrong e-card password; the failure is kept (`commit_state`), `tries_left` says how many
    remain before the lock."""

    code = "ecard.password_wrong"
    status = 403
    title_zh = "电子社保卡密码错误"
    title_en = "Wrong electronic card password"


class EcardPasswordLocked(EcardStateError):
    """Too many wrong e-card passwords in a row: locked until `retry_after` seconds from now (the
    Retry-After header); the PIN sets a new one meanwhile."""

    code = "ecard.password_locked"
    status = 423
    title_zh = "电子社保卡密码已锁定"
    title_en = "The electronic card password is locked"


class IdentityMismatch(EcardStateError):
    """ID number, name and card number do not name one card (an unknown card number too)."""

    code = "ecard.identity_mismatch"
    status = 401
    title_zh = "身份信息与社会保障卡不符"
    title_en = "The identity does not match the card"


class BindingNotFound(EcardStateError):
    """Revoking a channel binding this e-card does not have."""

    code = "binding.not_found"
    status = 404
    title_zh = "渠道绑定不存在"
    title_en = "Channel binding not found"


# --- merchants ----------------------------------------------------------------------------------
class MerchantNotFound(EcardError):
    """No merchant with this id."""

    code = "merchant.not_found"
    status = 404
    title_zh = "商户不存在"
    title_en = "Merchant not found"


class TerminalNotFound(EcardError):
    """No terminal with this id at this merchant."""

    code = "terminal.not_found"
    status = 404
    title_zh = "终端不存在"
    title_en = "Terminal not found"


class TerminalNotOfflineCapable(AuthError):
    """Offline records uploaded by a terminal not registered as offline-capable."""

    code = "terminal.not_offline_capable"
    status = 403
    title_zh = "该终端未登记为离线终端"
    title_en = "This terminal is not registered to upload offline records"


class OperatorExists(EcardError):
    """Creating an operator whose name is taken."""

    code = "operator.exists"
    status = 409
    title_zh = "操作员已存在"
    title_en = "Operator already exists"


# --- family proxies -----------------------------------------------------------------------------
class ProxyError(EcardError):
    """Base of the family proxy errors; not raised itself."""

    code = "proxy.error"
    status = 409
    title_zh = "亲情服务错误"
    title_en = "Family proxy error"


class ProxyNotFound(ProxyError):
    """A family binding that does not exist or that the caller is not party to."""

    code = "proxy.not_found"
    status = 404
    title_zh = "亲情绑定不存在"
    title_en = "Family binding not found"


class ProxyExists(ProxyError):
    """Binding a relative the proxy is already bound to."""

    code = "proxy.exists"
    status = 409
    title_zh = "已绑定该亲属"
    title_en = "Already bound to this relative"


class ProxyNotAllowed(ProxyError):
    """Binding a minor without being their parent, grandparent or guardian on record."""

    code = "proxy.relation_required"
    status = 403
    title_zh = "未登记符合条件的亲属关系"
    title_en = "No qualifying family relation on record"


class ProxyEnded(ProxyError):
    """Acting through a family binding that has ended; `end_reason` says why."""

    code = "proxy.ended"
    status = 409
    title_zh = "亲情绑定已结束"
    title_en = "The family binding has ended"


class TooManyDependants(ProxyError):
    """The proxy already manages `limit` dependants (ECARD_MAX_DEPENDANTS)."""

    code = "proxy.too_many_dependants"
    status = 409
    title_zh = "代管人数已达上限"
    title_en = "This relative already manages the most dependants allowed"


class TooManyProxies(ProxyError):
    """The dependant already has `limit` proxies (ECARD_MAX_PROXIES)."""

    code = "proxy.too_many_proxies"
    status = 409
    title_zh = "该人员的代管亲属已达上限"
    title_en = "This person already has the most proxies allowed"


class ConsentRequired(ProxyError):
    """Binding an adult without their consent code."""

    code = "consent.required"
    status = 422
    title_zh = "绑定成年人须提供其授权码"
    title_en = "Binding an adult needs their consent code"


class ConsentInvalid(ProxyError):
    """A consent code that is not one the adult being bound made."""

    code = "consent.invalid"
    status = 422
    title_zh = "授权码无效"
    title_en = "Invalid consent code"


class ConsentExpired(ProxyError):
    """A consent code past its lifetime (ECARD_CONSENT_CODE_TTL)."""

    code = "consent.expired"
    status = 422
    title_zh = "授权码已过期"
    title_en = "The consent code has expired"


class ConsentUsed(ProxyError):
    """A consent code already used (each is used once)."""

    code = "consent.used"
    status = 422
    title_zh = "授权码已使用"
    title_en = "The consent code was already used"


class SelfBinding(ProxyError):
    """Binding oneself as one's own dependant."""

    code = "proxy.self"
    status = 422
    title_zh = "不能绑定本人"
    title_en = "You cannot be your own proxy"


class ProxyCardUnusable(ProxyError):
    """The proxy holds no usable card of their own; `reason` is that card's code."""

    code = "proxy.own_card_unusable"
    status = 403
    title_zh = "您本人的社会保障卡当前不可用，不能代办亲属业务"
    title_en = "Your own card is not usable, so you cannot act for a relative"


class MinorCannotRevoke(ProxyError):
    """A minor revoking their own family binding: it ends at 16, or at a service window."""

    code = "proxy.minor_cannot_revoke"
    status = 403
    title_zh = "未成年人的亲情绑定满16周岁自动解除，或到服务网点解除"
    title_en = "A minor's family binding ends at 16, or at a service window"


# --- chip ---------------------------------------------------------------------------------------
class ChipKeysMissing(EcardError):
    """Not raised at present; its code stays reserved in the contract."""

    code = "chip.keys_missing"
    status = 409
    title_zh = "该卡尚未个人化"
    title_en = "The card has not been personalized"
