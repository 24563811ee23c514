"""The installable parts (README, "Installing the parts"): a gate installs `qr` and a merchant PC
installs `physical`, each without the service's dependencies.

The static checks read the pyproject files and the sources. The install check builds the two
parts' wheels from a copy of the sources (never inside the checkout, where others build too),
installs each into its own fresh virtual environment with only its declared dependencies (from
the index, or pip's cache), and runs it there: the gate verifies the golden vectors, the merchant
PC imports the terminal agent and pyscard. About 20-30 s, most of it pip.
"""

from __future__ import annotations

import ast
import importlib.metadata
import json
import os
import platform
import shutil
import subprocess
import sys
import textwrap
import tomllib
import venv
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
VECTORS = ROOT / "tests" / "vectors" / "qr"
FIRST_PARTY = {"ecard", "qr", "physical", "migrations", "wsgi", "tests"}
# What only the service needs: none of it may reach a gate or a merchant PC. (PyJWT is not among
# them: a gate checks a region's signed trust list with it, `qr.jws`.)
SERVER_ONLY = {
    canonicalize_name(n)
    for n in (
        "flask",
        "werkzeug",
        "flask-openapi3",
        "flask-openapi3-swagger",
        "pydantic",
        "sqlalchemy",
        "alembic",
        "flask-migrate",
        "psycopg",
        "flask-jwt-extended",
        "argon2-cffi",
        "base45",
        "structlog",
        "redis",
        "prometheus-flask-exporter",
        "gunicorn",
        "limits",
    )
}
# part: (directory of its pyproject.toml, the package it carries, its distribution name)
PARTS = {
    "gate": (ROOT / "packaging" / "qr", "qr", "ecard-qr"),
    "merchant": (ROOT / "packaging" / "physical", "physical", "ecard-physical"),
}
# What the install check installs: each part, and the gate once more with Intel's SM2 library.
INSTALLS = {"gate": ("gate", ""), "merchant": ("merchant", ""), "gate-fast-sm2": ("gate", "[fast-sm2]")}
PIP_ENV = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INPUT": "1"}


@pytest.fixture(autouse=True)
def _transaction() -> Iterator[None]:
    """Override the suite's per-test database transaction: packaging needs no database."""
    yield


def pyproject(directory: Path) -> dict:
    return tomllib.loads((directory / "pyproject.toml").read_text())


def pinned() -> dict[str, Requirement]:
    """The project's pins, requirements.txt and requirements-dev.txt, by distribution name."""
    pins = {}
    for name in ("requirements.txt", "requirements-dev.txt"):
        for line in (ROOT / name).read_text().splitlines():
            line = line.split("#", 1)[0].strip()
            if line and not line.startswith("-"):
                req = Requirement(line)
                pins[canonicalize_name(req.name)] = req
    return pins


def imported_distributions(package: str) -> set[str]:
    """The distributions whose modules `package`'s sources import (at any depth, lazily or not),
    found through this environment's installed metadata. Fails on an import of another of the
    repository's packages: the part would not have it."""
    modules = set()
    for path in (ROOT / package).glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                modules.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules.add(node.module.split(".")[0])
    modules -= set(sys.stdlib_module_names) | {"__future__", package}
    assert not modules & FIRST_PARTY, f"{package} imports {sorted(modules & FIRST_PARTY)}"
    owners = importlib.metadata.packages_distributions()
    unknown = sorted(m for m in modules if m not in owners)
    assert not unknown, f"{package} imports {unknown}, which no installed distribution provides"
    return {canonicalize_name(d) for m in modules for d in owners[m]}


@pytest.mark.parametrize("part", sorted(PARTS))
def test_a_part_declares_exactly_what_its_package_imports_pinned_as_the_project(part):
    directory, package, name = PARTS[part]
    project = pyproject(directory)["project"]
    assert project["name"] == name
    declared = [Requirement(r) for r in project["dependencies"]]
    assert {canonicalize_name(r.name) for r in declared} == imported_distributions(package)
    extras = [Requirement(r) for rs in project.get("optional-dependencies", {}).values() for r in rs]
    pins = pinned()
    for req in declared + extras:
        key = canonicalize_name(req.name)
        assert key not in SERVER_ONLY, f"{name} requires {req}"
        assert key in pins and str(req.specifier) == str(pins[key].specifier), (
            f"{name}: {req} is not pinned as in requirements*.txt ({pins.get(key)})"
        )


@pytest.mark.parametrize("part", sorted(PARTS))
def test_a_part_is_built_from_the_repository_source_and_versioned_with_the_service(part):
    directory, package, _ = PARTS[part]
    config = pyproject(directory)
    assert config["tool"]["setuptools"]["packages"] == [package]
    source = (directory / config["tool"]["setuptools"]["package-dir"][package]).resolve()
    assert source == ROOT / package
    assert config["project"]["version"] == pyproject(ROOT)["project"]["version"]


def test_the_service_carries_every_package_and_the_parts_commands():
    config = pyproject(ROOT)
    packages = set(config["tool"]["setuptools"]["packages"])
    for top in ("ecard", "qr", "physical", "migrations"):
        on_disk = {
            ".".join(p.relative_to(ROOT).parts)
            for p in [ROOT / top, *(ROOT / top).rglob("*")]
            if p.is_dir() and p.name != "__pycache__" and any(p.glob("*.py"))
        }
        assert on_disk <= packages, f"not in pyproject.toml's packages: {sorted(on_disk - packages)}"
    assert config["tool"]["setuptools"]["dynamic"]["dependencies"]["file"] == ["requirements.txt"]
    scripts = config["project"]["scripts"]
    assert scripts == pyproject(PARTS["merchant"][0])["project"]["scripts"]
    for target in scripts.values():
        module, function = target.split(":")
        tree = ast.parse((ROOT / (module.replace(".", "/") + ".py")).read_text())
        assert any(isinstance(n, ast.FunctionDef) and n.name == function for n in tree.body), target


def _run(args: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess:
    result = subprocess.run(args, cwd=cwd, env=PIP_ENV, capture_output=True, text=True, timeout=280)
    assert result.returncode == 0, f"{args}\n{result.stdout}\n{result.stderr}"
    return result


def _install(name: str, build: Path) -> Path:
    """Build the part's wheel from a copy of the sources and install it, with only its declared
    dependencies (and the extras of INSTALLS), into a fresh virtual environment; return that
    environment's python."""
    part, extras = INSTALLS[name]
    directory, package, _ = PARTS[part]
    build = build / name
    src = build / part / "src"
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "build", "dist")
    shutil.copytree(ROOT / package, src / package, ignore=ignore)
    shutil.copytree(directory, src / directory.relative_to(ROOT), ignore=ignore)
    wheels = build / part / "wheels"
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "-w",
            str(wheels),
            str(src / directory.relative_to(ROOT)),
        ]
    )
    (wheel,) = wheels.glob("*.whl")
    env = build / part / "venv"
    venv.create(env, with_pip=False, symlinks=True)
    python = env / "bin" / "python"
    _run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q", f"{wheel}{extras}"])
    return python


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> dict[str, Path]:
    build = tmp_path_factory.mktemp("parts")
    with ThreadPoolExecutor(len(INSTALLS)) as pool:  # the builds and installs side by side
        futures = {name: pool.submit(_install, name, build) for name in INSTALLS}
        return {name: future.result() for name, future in futures.items()}


def _probe(python: Path, code: str) -> dict:
    """Run `code` in the part's environment, isolated (-I: not the checkout, no PYTHONPATH), from
    an empty directory; it prints one JSON document."""
    out = _run([str(python), "-I", "-c", textwrap.dedent(code)], cwd=python.parent.parent)
    return json.loads(out.stdout.strip().splitlines()[-1])


SURVEY = """
    import importlib.metadata as md, importlib.util, json
    dists = sorted(d.metadata["Name"].lower() for d in md.distributions())
    requires = md.requires("{name}") or []
    present = [m for m in ("flask", "werkzeug", "sqlalchemy", "psycopg", "ecard")
              if importlib.util.find_spec(m) is not None]
"""


def test_a_gate_verifies_the_golden_vectors_without_the_service(installed):
    result = _probe(
        installed["gate"],
        SURVEY.format(name="ecard-qr")
        + f"""
    import qr
    from qr.vectors import ACCEPT, decide, load_vectors
    vectors = load_vectors({str(VECTORS)!r})
    wrong = [c.name for c in vectors.cases
             if decide(c.payload, vectors.trust_list, c.now, scene=c.scene) != c.expected]
    case = next(c for c in vectors.cases if c.expected == ACCEPT)
    code = qr.verify(case.payload, vectors.trust_list, case.now, scene=case.scene)
    print(json.dumps({{"dists": dists, "requires": requires, "present": present, "wrong": wrong,
                      "cases": len(vectors.cases), "file": qr.__file__, "kid": code.kid.hex()}}))
    """,
    )
    assert "site-packages" in result["file"], result["file"]
    assert result["cases"] > 0 and result["wrong"] == []
    assert result["present"] == []
    required = {canonicalize_name(Requirement(r).name) for r in result["requires"] if "extra ==" not in r}
    assert required == {"cryptography", "pyjwt", "qrcode", "pyotp", "tongsuopy"}
    assert not {canonicalize_name(d) for d in result["dists"]} & SERVER_ONLY, result["dists"]


SM2_ROUND_TRIP = """
    from datetime import UTC, datetime
    from qr import Alg, IssuerKey, KeyRing, Scene, build_trust_list, issue, verify
    from qr.algs import suite
    now = datetime(2026, 12, 3, tzinfo=UTC)
    ring = KeyRing([IssuerKey.generate("SM2", region_code="320100", created=now, publish_from=now,
                                       sign_from=now)], bytes(32), "320100")
    text, code = issue(ring, Scene.TRANSIT, bytes(16), now)
    ok = verify(text, build_trust_list(ring, now), now, scene=Scene.TRANSIT) == code
    print(json.dumps({"dists": dists, "ok": ok, "alg": code.alg.name,
                      "engine": suite(Alg.SM2).engine}))
"""


@pytest.mark.parametrize(("name", "engine"), [("gate", "tongsuo"), ("gate-fast-sm2", "ipp")])
def test_a_gate_verifies_sm2_codes_with_what_it_installs(installed, name, engine):
    """An SM2 code signed and verified inside the gate's environment: with Tongsuo alone, and with
    the `fast-sm2` extra through Intel's library (x86-64; where it is not published the extra
    installs nothing and Tongsuo verifies)."""
    result = _probe(installed[name], SURVEY.format(name="ecard-qr") + SM2_ROUND_TRIP)
    assert result["ok"] is True and result["alg"] == "SM2"
    expected = engine if platform.machine() == "x86_64" else "tongsuo"
    assert result["engine"] == expected
    assert ("ipp-crypto" in result["dists"]) == (expected == "ipp")


def test_a_merchant_pc_runs_the_terminal_agent_without_the_service(installed):
    python = installed["merchant"]
    result = _probe(
        python,
        SURVEY.format(name="ecard-physical")
        + """
    import physical.terminal, physical.emulator, smartcard.System
    print(json.dumps({"dists": dists, "requires": requires, "present": present,
                      "qr": importlib.util.find_spec("qr") is not None,
                      "file": physical.terminal.__file__}))
    """,
    )
    assert "site-packages" in result["file"], result["file"]
    assert result["present"] == [] and result["qr"] is False
    required = {canonicalize_name(Requirement(r).name) for r in result["requires"]}
    assert "pyscard" in required and "flask" not in required
    assert not {canonicalize_name(d) for d in result["dists"]} & SERVER_ONLY, result["dists"]
    for script in ("ecard-terminal", "ecard-card-emulator"):
        usage = _run([str(python.parent / script), "--help"]).stdout
        assert usage.startswith("usage:"), usage
