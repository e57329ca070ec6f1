"""The dependency locks CI and the Dockerfile install from stay in step with
pyproject.toml: every declared dependency is pinned, and the app's lock is the dev lock's
runtime part at the same versions (so the tests run the code production runs)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PIN = re.compile(r"^([A-Za-z0-9_.\-]+)==([^\s\\]+) \\$", re.M)


def pins(name: str) -> dict[str, str]:
    text = (REPO / "requirements" / name).read_text(encoding="utf-8")
    return {_norm(package): version for package, version in PIN.findall(text)}


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def declared(*extras: str) -> set[str]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    specs = list(project["dependencies"])
    for extra in extras:
        specs += project["optional-dependencies"][extra]
    return {_norm(re.split(r"[\s\[<>=!~;]", spec, maxsplit=1)[0]) for spec in specs}


def test_every_dependency_is_pinned_with_its_hashes() -> None:
    app, dev = pins("app.lock"), pins("dev.lock")
    assert declared() - set(app) == set()
    assert declared("dev", "postgres") - set(dev) == set()
    for name in ("app.lock", "dev.lock"):
        text = (REPO / "requirements" / name).read_text(encoding="utf-8")
        # Every pin carries at least one hash: pip --require-hashes refuses the file otherwise.
        assert text.count("==") <= text.count("--hash=sha256:"), name
        assert "file://" not in text and "--find-links" not in text, f"{name} names this machine's index"


def test_the_app_lock_is_the_dev_locks_runtime_part_at_the_same_versions() -> None:
    app, dev = pins("app.lock"), pins("dev.lock")
    assert {name: (version, dev.get(name)) for name, version in app.items() if dev.get(name) != version} == {}


def test_ci_the_readme_and_the_dockerfile_install_from_the_locks() -> None:
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8")
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    docker = (REPO / "Dockerfile").read_text(encoding="utf-8")
    assert "--require-hashes -r requirements/dev.lock" in ci
    assert "--require-hashes -r requirements/dev.lock" in readme
    assert "--require-hashes -r requirements/app.lock" in readme
    assert "--require-hashes -r requirements/app.lock" in docker
