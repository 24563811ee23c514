"""The pages people use, served by the same app over the same domain functions as the API:

    /h5/      the holder's card: sign in, the card face, the one code, family, usage, audit
    /scan/    a merchant's scanner: camera or USB scanner, each decision shown large
    /window/  a service window's console: find a person, act on the card, every refusal in words

Plain server-rendered HTML (Jinja, autoescaped) and a little JavaScript of our own, served from
`static/` (the QR decoder, jsQR, is vendored there, pinned: no CDN at run time). Each handler is
as thin as the API's: read the form through the API's request model, call the domain, render.
How the page session, CSRF and the headers work: `common` and `headers` below.
"""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    """Register the pages on `app` (`site.init_app`)."""
    from ecard.api.pages import site

    site.init_app(app)
