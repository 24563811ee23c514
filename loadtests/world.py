"""A world to load: a fresh instance directory and database, seeded through the app's own domain
functions, tokens minted in process, and gunicorn started on a free port.

Shared by the benchmark driver (`loadtests.bench`) and the locust runner (`loadtests.run_locust`).
Seeding goes through `persons.register`, `cards.apply`/`cards.issue`, `ecards.sign`,
`persons.record_relation`/`proxies.bind` and `chip.personalize`, exactly as the windows and apps
would, so the rows are what production holds: encrypted personal data, blind indexes, argon2
PIN hashes, events. Only the argon2 cost of the seeding process is lowered
(ECARD_ARGON2_TIME_COST=1, ECARD_ARGON2_MEMORY_KIB=1024): the hashes carry their own parameters,
and no benchmarked endpoint checks a PIN. The server itself runs with the production cost.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
PIN = "285714"
CHIP_PIN = "123456"
TOKEN_TTL = 4 * 3600  # minted tokens outlive any run
OPERATOR = ("loadtest-window", "loadtest-window-pass")
PG_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
REDIS_URL = "redis://127.0.0.1:6379/9"

# Merchants of a mid-size city: name, scenes. The first serves every scene (the benchmark's).
MERCHANTS = [
    ("Bench all scenes", ["clinic", "transit", "scenic"]),
    ("City No.1 hospital", ["clinic"]),
    ("Metro and bus gates", ["transit"]),
    ("Scenic area", ["scenic"]),
]

_SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵万钱严覃武戴莫孔向汤"
_GIVEN = (
    "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华玉兰萍红鹏飞建国志坤海燕宇浩然子涵欣怡梓轩雨晨思远嘉"
)


def id_number(region: str, born: date, seq: int) -> str:
    """A valid 18-character ID number (GB 11643 check character) for a made-up person."""
    from ecard.idnumber import check_character

    first17 = f"{region}{born:%Y%m%d}{seq:03d}"
    return first17 + check_character(first17)


def adult(i: int) -> tuple[str, str, str | None]:
    """The i-th made-up adult: ID number (born 1950..2004, all distinct), name, phone or None."""
    born = date(1950, 1, 1) + timedelta(days=(i * 7919) % 20000)  # 7919 is prime: a permutation
    name = _SURNAMES[i % len(_SURNAMES)] + _GIVEN[(i * 7) % len(_GIVEN)]
    if i % 3:
        name += _GIVEN[(i * 13) % len(_GIVEN)]
    phone = f"13{(i * 7919 + 12345) % 10**9:09d}" if i % 2 else None
    return id_number("320102", born, i // 20000), name, phone


def minor(j: int) -> tuple[str, str]:
    born = date(2014, 1, 1) + timedelta(days=(j * 37) % 2000)
    return id_number("320104", born, j // 2000), _SURNAMES[j % len(_SURNAMES)] + "小" + _GIVEN[
        j % len(_GIVEN)
    ]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def load_now() -> list[float]:
    return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]


class CpuMeter:
    """CPU time the machine spent during a window, by who spent it: the server (gunicorn and its
    workers), the client (this driver and its load generators), the database and Redis, and
    everything else (`external`: other work on the machine, which slows the figures down).
    Shares are of the whole machine (100 % = every core busy). The driver's ticks include those
    of its children that ended and were waited for (the load generators)."""

    def __init__(self, server_pid: int | None = None, pg_db: str | None = None) -> None:
        self.server_pid = server_pid
        self.pg_db = pg_db  # only backends of this database count as ours
        self.hz = os.sysconf("SC_CLK_TCK")
        self.start = self._snapshot()
        self.t0 = time.monotonic()

    @staticmethod
    def _snapshot() -> dict[int, tuple[int, int, str]]:  # pid -> (ppid, ticks, comm)
        snap = {}
        for d in Path("/proc").iterdir():
            if not d.name.isdigit():
                continue
            try:
                stat = (d / "stat").read_text()
                comm = stat[stat.index("(") + 1 : stat.rindex(")")]
                fields = stat[stat.rindex(")") + 2 :].split()
                ticks = int(fields[11]) + int(fields[12])  # utime stime
                if int(d.name) == os.getpid():  # and the load generators it has waited for
                    ticks += int(fields[13]) + int(fields[14])
                snap[int(d.name)] = (int(fields[1]), ticks, comm)
            except (OSError, ValueError, IndexError):
                continue
        return snap

    def stop(self) -> dict[str, float]:
        end, seconds = self._snapshot(), time.monotonic() - self.t0
        self.seconds = seconds
        mine, server = self._tree(end, os.getpid()), self._tree(end, self.server_pid)
        used = {"server": 0, "client": 0, "postgres": 0, "redis": 0, "external": 0}
        top: dict[str, int] = {}
        for pid, (_, ticks, comm) in end.items():
            delta = ticks - self.start.get(pid, (0, 0, ""))[1]
            if delta <= 0:
                continue
            who = (
                "server"
                if pid in server
                else "client"
                if pid in mine
                else "postgres"
                if comm.startswith("postgres") and self._our_backend(pid)
                else "redis"
                if comm.startswith("redis")
                else "external"
            )
            used[who] += delta
            if who == "external":
                top[comm] = top.get(comm, 0) + delta
        capacity = seconds * self.hz * (os.cpu_count() or 1)
        out = {f"{k}_pct": round(100 * v / capacity, 1) for k, v in used.items()}
        out["external_top"] = {
            k: round(100 * v / capacity, 1) for k, v in sorted(top.items(), key=lambda kv: -kv[1])[:3]
        }
        out["cpu_seconds"] = {k: round(v / self.hz, 2) for k, v in used.items()}
        return out

    def _our_backend(self, pid: int) -> bool:
        if self.pg_db is None:
            return False
        try:
            return f" {self.pg_db} ".encode() in Path(f"/proc/{pid}/cmdline").read_bytes().replace(
                b"\0", b" "
            )
        except OSError:
            return False

    @staticmethod
    def _tree(snap: dict[int, tuple[int, int, str]], root: int | None) -> set[int]:
        """`root` and its descendants."""
        if root is None:
            return set()
        tree, changed = {root}, True
        while changed:
            changed = False
            for pid, (ppid, _, _) in snap.items():
                if ppid in tree and pid not in tree:
                    tree.add(pid)
                    changed = True
        return tree


# --- the instance and its database -----------------------------------------------------------------


@dataclass
class Instance:
    """Where one world lives: the instance directory (keys, chip images, manifest, SQLite file)
    and the database URL."""

    dir: Path
    db: str  # sqlite | postgres
    url: str
    redis_url: str | None
    extra_env: dict[str, str] = field(default_factory=dict)
    # ECARD_CRYPTO_SUITE of the migrations' first app start (which makes the keys), the seeding
    # and the server: a world made under one suite has that suite's QR keys and data keys.
    suite: str = "intl"

    @property
    def keys_dir(self) -> Path:
        return self.dir / "keys"

    @property
    def manifest(self) -> Path:
        return self.dir / "world.json"

    def server_env(self) -> dict[str, str]:
        """The environment gunicorn runs with: production argon2 cost, limits on, the world's suite."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("ECARD_", "GUNICORN_"))}
        env.update(
            ECARD_DATABASE_URL=self.url,
            ECARD_KEYS_DIR=str(self.keys_dir),
            ECARD_CRYPTO_SUITE=self.suite,
            ECARD_QR_TTL="300",
            ECARD_CHIP_CHALLENGE_TTL="3600",
        )
        if self.redis_url:
            env["ECARD_REDIS_URL"] = self.redis_url
        env.update(self.extra_env)
        return env


def create_instance(
    db: str,
    directory: Path | None,
    *,
    pg_db: str = "ecard_bench",
    redis: bool = True,
    fresh: bool = True,
    suite: str = "intl",
    extra_env: dict[str, str] | None = None,
) -> Instance:
    """Make (or, with fresh=False, reopen) an instance directory and its database, schema included,
    under the crypto suite `suite` (intl or sm: the keys are made by the migrations' app start).
    `extra_env`: settings of the instance's own (e.g. ECARD_REGION_CODE, which the key ring made
    at the migrations' start belongs to), kept in `Instance.extra_env` for its servers."""
    if directory is None:
        directory = Path(tempfile.mkdtemp(prefix=f"ecard-{db}-"))
    elif fresh and directory.exists():
        shutil.rmtree(directory)
    directory.mkdir(parents=True, exist_ok=True)
    if db == "sqlite":
        url = f"sqlite:///{directory / 'ecard.sqlite'}"
    elif db == "postgres":
        url = PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + pg_db
        if fresh:
            import psycopg

            with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{pg_db}" WITH (FORCE)')
                conn.execute(f'CREATE DATABASE "{pg_db}"')
    else:
        raise ValueError(f"unknown database {db!r}")
    inst = Instance(
        directory, db, url, REDIS_URL if redis else None, extra_env=dict(extra_env or {}), suite=suite
    )
    if fresh:
        # The schema is made only by the migrations, as in production.
        subprocess.run(
            [str(BIN / "flask"), "--app", "wsgi", "db", "upgrade"],
            cwd=ROOT,
            env=inst.server_env(),
            check=True,
            capture_output=True,
        )
    return inst


def make_app(inst: Instance, config: dict[str, Any] | None = None):
    """The app in this process (seeding, minting tokens, issuing codes), same keys and database.
    `config`: further settings, last (e.g. the region code and JWT issuer of one deployment of
    several, `loadtests.federation`)."""
    sys.path.insert(0, str(ROOT))
    from ecard import create_app

    return create_app(
        {
            "ECARD_DATABASE_URL": inst.url,
            "ECARD_KEYS_DIR": str(inst.keys_dir),
            "ECARD_ARGON2_TIME_COST": 1,
            "ECARD_ARGON2_MEMORY_KIB": 1024,
            "ECARD_QR_TTL": 300,
            "ECARD_CHIP_CHALLENGE_TTL": 3600,
            "ECARD_LOG_LEVEL": "WARNING",
            "ECARD_REDIS_URL": None,
            "ECARD_CRYPTO_SUITE": inst.suite,
            **(config or {}),
        }
    )


# --- seeding ---------------------------------------------------------------------------------------


def seed(
    app,
    inst: Instance,
    *,
    cards: int,
    terminals: int = 100,
    families: int | None = None,
    chip_cards: int = 200,
    batch: int = 1000,
    domain_first: int = 1000,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Seed `cards` holders (person, issued card, e-card signed in one channel), families (a
    parent holder and a minor bound as dependant), merchants with `terminals` terminals each, an
    operator, and `chip_cards` personalized chips (images under <instance>/chip). Commits every
    `batch` holders. The first `domain_first` holders go through the domain functions one by
    one (about 100 a second); the rest are built in batches by `_bulk_holders`, which makes the
    same rows about ten times faster. Writes and returns the manifest."""
    from ecard import accounts, chip, ecards, persons, proxies
    from ecard import cards as cards_mod
    from ecard.api import transactions
    from ecard.api.transactions import services
    from ecard.context import Actor, utcnow
    from physical.image import save_image

    families = min(cards // 20, 500) if families is None else families
    chip_cards = min(chip_cards, cards)
    t0 = time.perf_counter()
    with app.app_context():
        session, svc, now = transactions.session_outside_request(), services(), utcnow()
        window = Actor("operator", OPERATOR[0], "window")
        accounts.create_operator(session, svc, username=OPERATOR[0], password=OPERATOR[1], now=now)
        merchants = []
        for name, scenes in MERCHANTS:
            m = accounts.create_merchant(
                session, name=name, scenes=scenes, region_code=svc.setting("REGION_CODE"), now=now
            )
            ids = [
                accounts.create_terminal(
                    session, m, accounts.new_terminal_secret(svc), name=f"{name} #{k}", now=now
                ).public_id
                for k in range(terminals)
            ]
            merchants.append({"merchant_id": m.public_id, "name": name, "scenes": scenes, "terminals": ids})
        session.commit()
        channels = ("app", "wechat", "alipay", "bank")
        eligible = persons.Eligibility("household_registration", "household_register", "LOADTEST")
        pin = svc.hasher.new("pin", PIN)  # one hash for every card of the world: argon2 once
        typed = svc.hasher.check("pin", pin.hash, PIN)
        for i in range(min(cards, domain_first)):
            idn, name, phone = adult(i)
            person = persons.register(
                session, svc, id_number=idn, name=name, phone=phone, eligibility=eligible, now=now
            )
            card = cards_mod.apply(session, svc, person, actor=window, now=now)
            cards_mod.issue(session, svc, card, pin=pin, actor=window, now=now)
            ecards.sign(
                session,
                svc,
                id_number=idn,
                name=name,
                card_no=card.card_no,
                pin=typed,
                channel=channels[i % 4],
                device_id=f"device-{i}",
                now=now,
            )
            if (i + 1) % batch == 0:
                session.commit()
                session.expunge_all()
                if (i + 1) % (batch * 10) == 0 or i + 1 == cards:
                    rate = (i + 1) / (time.perf_counter() - t0)
                    log(f"  seeded {i + 1}/{cards} holders ({rate:.0f}/s)")
        session.commit()
        for start in range(domain_first, cards, batch):
            _bulk_holders(session, svc, start, min(batch, cards - start), now)
            session.commit()
            session.expunge_all()
            done = min(start + batch, cards)
            if done % (batch * 10) == 0 or done == cards:
                log(f"  seeded {done}/{cards} holders ({done / (time.perf_counter() - t0):.0f}/s, bulk)")
        if cards > domain_first:
            _check_bulk(session, svc, cards - 1, now)
        # Families: holder i (a parent) and a minor with an issued card, the relation on record
        # (household register), bound as the parent's dependant.
        fams = []
        for j in range(families):
            parent_idn, _, _ = adult(j)
            parent = persons.find_by_id_number(session, svc, parent_idn)
            cidn, cname = minor(j)
            child = persons.register(
                session, svc, id_number=cidn, name=cname, phone=None, eligibility=eligible, now=now
            )
            ccard = cards_mod.apply(session, svc, child, actor=window, now=now)
            cards_mod.issue(session, svc, ccard, pin=pin, actor=window, now=now)
            persons.record_relation(
                session,
                svc,
                child,
                relative=parent,
                relation="parent",
                evidence_kind="household_register",
                evidence_no=f"HR{j:08d}",
                actor=window,
                now=now,
            )
            link = proxies.bind(
                session,
                svc,
                parent,
                id_number=cidn,
                name=cname,
                card_no=ccard.card_no,
                relation="parent",
                consent_code=None,
                actor=Actor("holder", None, "app"),
                now=now,
            )
            fams.append({"parent_id_number": parent_idn, "dependant_id": link.public_id})
        session.commit()
        # Chips: the first holders' cards personalized, as `flask ecard personalize` does.
        chip_dir = inst.dir / "chip"
        chip_dir.mkdir(exist_ok=True)
        from sqlalchemy import select

        from ecard.models import Card

        chip_nos = list(
            session.scalars(
                select(Card.card_no)
                .where(Card.kind == "formal", Card.status == "issued")
                .order_by(Card.id)
                .limit(chip_cards)
            )
        )
        for no in chip_nos:
            card = cards_mod.get(session, no)
            image = chip.personalize(session, svc, inst.keys_dir, card, pin=CHIP_PIN, now=now)
            save_image(chip_dir / f"{no}.json", image)
        session.commit()
    manifest = {
        "db": inst.db,
        "suite": inst.suite,
        "url": inst.url,
        "cards": cards,
        "families": fams,
        "merchants": merchants,
        "chip_cards": chip_nos,
        "operator": OPERATOR[0],
        "seed_seconds": round(time.perf_counter() - t0, 1),
    }
    inst.manifest.write_text(json.dumps(manifest, ensure_ascii=False, indent=1))
    return manifest


def _bulk_holders(session, svc, start: int, count: int, now) -> None:
    """Holders start..start+count-1 as register + apply + issue + sign would leave them, built in
    batches: the same columns from the same helpers (vault encryption and blind index, argon2
    PIN hash with its own salt, card numbers from the sequence, validity, TOTP seed, the three
    events), without the per-row look-ups that make the domain path slow."""
    import sqlalchemy as sa

    import qr
    from ecard import cards as cards_mod
    from ecard import ecards, persons
    from ecard.idnumber import make_card_no, parse_id_number
    from ecard.ids import new_id
    from ecard.models import APPLIED, ISSUED, Binding, Card, CardNoSequence, ECard, Event, Person

    end = session.scalar(
        sa.update(CardNoSequence)
        .where(CardNoSequence.prefix == "A")
        .values(next_value=CardNoSequence.next_value + count)
        .returning(CardNoSequence.next_value)
    )
    first_serial = end - count
    enc, idx = svc.vault.encrypt, svc.vault.blind_index
    people = []
    for k in range(count):
        idn, name, phone = adult(start + k)
        parsed = parse_id_number(idn)
        people.append(
            Person(
                public_id=new_id("per"),
                id_index=idx(parsed.value, context=persons.ID_CTX),
                id_number_enc=enc(parsed.value, context=persons.ID_CTX),
                name_enc=enc(name, context=persons.NAME_CTX),
                phone_enc=enc(phone, context=persons.PHONE_CTX) if phone else None,
                birth_date=parsed.birth_date,
                sex=parsed.sex,
                created_at=now,
            )
        )
    session.add_all(people)
    session.flush()
    deadline = now + timedelta(days=svc.setting("PRODUCTION_DAYS"))
    new_cards = [
        Card(
            card_no=make_card_no("A", first_serial + k),
            person_id=p.id,
            kind="formal",
            status=ISSUED,
            live=True,
            generation=svc.setting("CARD_GENERATION"),
            region_code=svc.setting("REGION_CODE"),
            applied_at=now,
            production_deadline=deadline,
            issued_at=now,
            expires_at=cards_mod.validity_end(p.birth_date, now),
            pin_hash=svc.hasher.hash("pin", PIN),
            pin_failures=0,
            pin_locked=False,
            frozen=False,
            fee=0,
            created_at=now,
        )
        for k, p in enumerate(people)
    ]
    session.add_all(new_cards)
    session.flush()
    window = dict(actor_type="operator", actor_ref=OPERATOR[0], channel="window")
    eca = [
        ECard(public_id=new_id("ec"), person_id=c.person_id, card_id=c.id, created_at=now) for c in new_cards
    ]
    session.add_all(eca)
    for c in new_cards:
        session.add(
            Event(
                person_id=c.person_id,
                card_id=c.id,
                at=now,
                action="applied",
                from_status=None,
                to_status=APPLIED,
                **window,
            )
        )
        session.add(
            Event(
                person_id=c.person_id,
                card_id=c.id,
                at=now,
                action="issued",
                from_status=APPLIED,
                to_status=ISSUED,
                **window,
            )
        )
    session.flush()
    channels = ("app", "wechat", "alipay", "bank")
    binds = [
        Binding(
            public_id=new_id("bnd"),
            ecard_id=e.id,
            channel=channels[(start + k) % 4],
            device_id=f"device-{start + k}",
            created_at=now,
            totp_seed_enc=enc(qr.new_seed(), context=ecards.TOTP_CTX),
        )
        for k, e in enumerate(eca)
    ]
    session.add_all(binds)
    for e, b in zip(eca, binds):
        session.add(
            Event(
                person_id=e.person_id,
                card_id=e.card_id,
                at=now,
                action="ecard_signed",
                actor_type="holder",
                actor_ref=b.public_id,
                channel=b.channel,
            )
        )
    session.flush()


def _check_bulk(session, svc, i: int, now) -> None:
    """Prove a bulk-made holder is what the domain expects: found by ID number, name decrypts,
    the PIN verifies, the e-card is active."""
    import sqlalchemy as sa

    from ecard import cards as cards_mod
    from ecard import ecards, persons
    from ecard.models import ECard

    idn, name, _ = adult(i)
    person = persons.find_by_id_number(session, svc, idn)
    assert person is not None and persons.view(svc, person).name == name, "bulk person unreadable"
    ecard = session.scalar(sa.select(ECard).where(ECard.person_id == person.id))
    cards_mod.verify_pin(session, svc, ecard.card, svc.hasher.check("pin", ecard.card.pin_hash, PIN), now=now)
    assert ecards.status(svc, ecard, now) == "active", "bulk e-card not active"


# --- tokens ----------------------------------------------------------------------------------------


def sample_holders(app, k: int, *, seed_value: int = 1) -> list[dict[str, Any]]:
    """k holders spread over the whole population (not just the first rows), with their e-card."""
    import random

    import sqlalchemy as sa

    from ecard.api import transactions
    from ecard.models import Binding

    with app.app_context():
        session = transactions.session_outside_request()
        ids = list(session.scalars(sa.select(Binding.id).where(Binding.revoked_at.is_(None))))
        random.Random(seed_value).shuffle(ids)
        chosen = ids[:k]
        rows = session.execute(
            sa.select(Binding.public_id, Binding.channel, Binding.ecard_id).where(Binding.id.in_(chosen))
        ).all()
    return [{"binding": r[0], "channel": r[1], "ecard_id": r[2]} for r in rows]


def holder_tokens(app, holders: list[dict[str, Any]]) -> list[str]:
    from ecard.api import auth

    with app.app_context():
        return [
            auth.tokens_for(
                auth.HOLDER, h["binding"], refresh=False, extra={"ch": h["channel"]}, access_ttl=TOKEN_TTL
            )["access_token"]
            for h in holders
        ]


def terminal_tokens(app, merchant: dict[str, Any]) -> list[str]:
    from ecard.api import auth

    with app.app_context():
        return [
            auth.tokens_for(
                auth.TERMINAL,
                tid,
                refresh=False,
                extra={"mid": merchant["merchant_id"]},
                access_ttl=TOKEN_TTL,
            )["access_token"]
            for tid in merchant["terminals"]
        ]


def operator_token(app) -> str:
    from ecard.api import auth

    with app.app_context():
        return auth.tokens_for(auth.OPERATOR, OPERATOR[0], refresh=False, access_ttl=TOKEN_TTL)[
            "access_token"
        ]


def family_tokens(app, families: list[dict[str, Any]]) -> list[dict[str, str]]:
    """For each family: the parent's holder token and the dependant id."""
    import sqlalchemy as sa

    from ecard import persons
    from ecard.api import transactions
    from ecard.api.transactions import services
    from ecard.models import Binding, ECard

    out = []
    with app.app_context():
        session, svc = transactions.session_outside_request(), services()
        for fam in families:
            person = persons.find_by_id_number(session, svc, fam["parent_id_number"])
            b = session.execute(
                sa.select(Binding.public_id, Binding.channel)
                .join(ECard)
                .where(ECard.person_id == person.id, Binding.revoked_at.is_(None))
            ).first()
            out.append({"dependant_id": fam["dependant_id"], "binding": b[0], "channel": b[1]})
    toks = holder_tokens(app, out)
    return [{"token": t, "dependant_id": f["dependant_id"]} for t, f in zip(toks, out)]


# --- chips ----------------------------------------------------------------------------------------


def chip_cards(directory: Path, manifest: dict[str, Any]) -> list[tuple[str, Any]]:
    """The world's personalized chips (`seed` wrote their images under <instance>/chip) as
    (card number, `physical.card.VirtualCard`), in the manifest's order. A card's transaction
    counter rises with every read it answers: `save_chip_cards` once the reads are made, or the
    next run's reads are refused as replays (chip.replayed)."""
    from physical.card import VirtualCard
    from physical.image import load_image

    nos = manifest.get("chip_cards") or []
    if not nos:
        raise SystemExit(
            f"{directory} has no personalized chips (world.json: chip_cards); make the world anew"
        )
    return [(no, VirtualCard(load_image(Path(directory) / "chip" / f"{no}.json"))) for no in nos]


def save_chip_cards(directory: Path, cards: list[tuple[str, Any]]) -> None:
    """Write back the images of `chip_cards` (their counters went up)."""
    from physical.image import save_image

    for no, card in cards:
        save_image(Path(directory) / "chip" / f"{no}.json", card.image, sync=False)


def chip_read(
    card: Any, challenge: str, *, pin: str | None = CHIP_PIN, scene: str | None = "clinic"
) -> dict[str, Any]:
    """The body of `POST /api/v1/verifications/chip` a terminal agent would send: the virtual
    card answers the server's challenge (hex UN) as `physical.terminal` has a real card do
    (`read_card` over `DirectConnection`), the holder keying the chip PIN (a clinic read needs
    it), for `scene`."""
    from physical.reader import DirectConnection, read_card

    card.reset()  # a new card session, as a card put on the reader
    body = read_card(DirectConnection(card), bytes.fromhex(challenge), pin=pin).verification_request()
    if scene is not None:
        body["scene"] = scene
    return body


# --- the server ------------------------------------------------------------------------------------


class Server:
    """gunicorn with the project's gunicorn.conf.py on a free port, its output in a log file."""

    def __init__(
        self,
        inst: Instance,
        *,
        workers: int | None = None,
        port: int | None = None,
        log_path: Path | None = None,
        extra_env: dict[str, str] | None = None,
        root: Path = ROOT,
    ) -> None:
        self.inst = inst
        self.root = root  # another checkout to serve from, e.g. a patched copy for an A/B trial
        self.port = port or free_port()
        self.workers = workers
        self.log_path = log_path or inst.dir / "gunicorn.log"
        self.extra_env = extra_env or {}
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60) -> Server:
        env = self.inst.server_env()
        # No worker recycling: at /healthz rates the default bound fell inside the window, and a
        # recycled worker's CPU time vanished from the count with its process.
        env.update(
            GUNICORN_BIND=f"127.0.0.1:{self.port}",
            GUNICORN_ACCESSLOG="",
            GUNICORN_MAX_REQUESTS="0",
            **self.extra_env,
        )
        if self.workers:
            env["GUNICORN_WORKERS"] = str(self.workers)
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [str(BIN / "gunicorn"), "-c", "gunicorn.conf.py", "wsgi:app"],
            cwd=self.root,
            env=env,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
        log.close()
        deadline = time.time() + timeout
        ready = 0
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gunicorn exited with {self.proc.returncode}; see {self.log_path}")
            try:
                with urllib.request.urlopen(self.url + "/readyz", timeout=2) as r:
                    ready = r.status == 200
            except OSError:
                ready = False
            if ready and len(self.worker_pids()) >= (self.workers or 1):
                time.sleep(1.0)  # let the other workers finish importing before the clock starts
                return self
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"gunicorn did not become ready in {timeout} s; see {self.log_path}")

    def worker_pids(self) -> list[int]:
        if self.proc is None:
            return []
        out = subprocess.run(
            ["ps", "-o", "pid=", "--ppid", str(self.proc.pid)], capture_output=True, text=True
        )
        return [int(x) for x in out.stdout.split()]

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)  # gunicorn's graceful stop; the master's own id only
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
