"""Several organizations end to end: `guard check` ticks each against its own simulated
Admin API, on SQLite (a file each) and PostgreSQL (a schema each); ledgers never mix, and a
dead key fails only its own organization."""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from guard.adapters.store.lease import Lease
from guard.entry import wiring
from guard.entry.cli import app
from guard.entry.daemon import Daemon
from guard.sim import SimClock, SimOrg, SimServer

KEY = "sk-ant-admin-orgs-test"
NOW = datetime.now(UTC).replace(second=0, microsecond=0)


@pytest.fixture(scope="module")
def sims() -> Iterator[tuple[SimServer, SimServer]]:
    """Two simulated organizations, each its own Admin API."""
    with SimServer(SimOrg.generate(3), SimClock(NOW), admin_key=KEY) as acme, \
            SimServer(SimOrg.generate(4), SimClock(NOW), admin_key=KEY) as beta:
        yield acme, beta


def organization(name: str, base_url: str, key: str, out: Path) -> str:
    return (f'[[organizations]]\nname = "{name}"\nadmin_api_key = "{key}"\n'
            f'base_url = "{base_url}"\nenv_file = "{out / f"{name}.env"}"\n'
            f'state_file = "{out / f"{name}.json"}"\n'
            f'[[organizations.budgets]]\nname = "org"\nscope = "organization"\n'
            "soft_limit_usd = 100\nhard_limit_usd = 1000000\n")


def write(tmp_path: Path, state_url: str, body: str) -> Path:
    path = tmp_path / "guard.toml"
    path.write_text(f'[anthropic]\nmax_retries = 0\n[state]\nurl = "{state_url}"\n'
                    f'[fallback]\nenv_file = "{tmp_path / "model.env"}"\n'
                    f'state_file = "{tmp_path / "fallback.json"}"\n' + body)
    return path


def check(config: Path) -> tuple[int, Any]:
    result = CliRunner().invoke(app, ["--config", str(config), "check", "--json"])
    return result.exit_code, json.loads(result.stdout)


def spend(report: dict[str, Any]) -> float:
    (budget,) = report["budgets"]
    return float(budget["spend_usd"])


@pytest.fixture(params=["sqlite", "postgresql"])
def state_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A state store of its own: a SQLite file, or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'state.db'}"
        return
    base = sa.engine.make_url(request.getfixturevalue("pg_url"))
    name = f"{base.database}_orgs"
    admin = sa.create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    yield base.set(database=name).render_as_string(False)
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE "{name}" WITH (FORCE)'))
    admin.dispose()


def test_a_check_ticks_each_organization_apart_and_a_dead_key_fails_only_its_own(
        tmp_path: Path, state_url: str, sims: tuple[SimServer, SimServer]) -> None:
    """Three organizations, one with a key its API rejects: the JSON is an object by
    organization, each report names it; the dead one has its upstream error and exit 3, the
    others spend what a single-organization check of their API says, and differ. Each
    organization's data is in its own namespace (a schema, a file), the store's own tables
    hold no usage, and the leader leases sit side by side, freed when the check ends.
    `guard report` reads each organization apart in the same way."""
    acme, beta = sims
    config = write(tmp_path, state_url,
                   organization("acme", acme.base_url, KEY, tmp_path)
                   + organization("beta", beta.base_url, KEY, tmp_path)
                   + organization("dead", acme.base_url, "sk-ant-admin-revoked", tmp_path))
    code, body = check(config)
    assert code == 3 and list(body) == ["acme", "beta", "dead"]
    assert [body[n]["organization"] for n in body] == ["acme", "beta", "dead"]
    assert body["acme"]["upstream_error"] is None and body["beta"]["upstream_error"] is None
    assert "401" in body["dead"]["upstream_error"] or "rejected" in body["dead"][
        "upstream_error"]
    assert KEY not in json.dumps(body)
    alone = tmp_path / "alone"
    alone.mkdir()
    single = alone / "guard.toml"
    single.write_text(f'[anthropic]\nadmin_api_key = "{KEY}"\nbase_url = "{acme.base_url}"\n'
                      f'[state]\nurl = "sqlite:///{alone / "state.db"}"\n'
                      f'[fallback]\nenv_file = "{alone / "m.env"}"\n'
                      f'state_file = "{alone / "f.json"}"\n[[budgets]]\nname = "org"\n'
                      'scope = "organization"\nsoft_limit_usd = 100\nhard_limit_usd = 1000000\n')
    single_code, single_body = check(single)
    assert single_code == 0 and "organization" not in single_body
    assert spend(body["acme"]) == spend(single_body) != spend(body["beta"])
    assert (tmp_path / "acme.env").read_text().startswith("ANTHROPIC_MODEL=")
    assert not (tmp_path / "model.env").exists()
    reported = CliRunner().invoke(app, ["--config", str(config), "report", "--json"])
    report = json.loads(reported.stdout)
    assert reported.exit_code == 3 and report["dead"]["organization"] == "dead"
    assert spend(report["acme"]) == spend(body["acme"]) and "error" in report["dead"]
    assert_namespaces(state_url, tmp_path)


def assert_namespaces(state_url: str, tmp_path: Path) -> None:
    engine = sa.create_engine(state_url)
    try:
        with engine.connect() as conn:
            leases = conn.execute(sa.text("SELECT name, expires_at FROM leases")).all()
            assert sorted(leases) == [("leader:acme", 0), ("leader:beta", 0), ("leader:dead", 0)]
            assert conn.execute(sa.text("SELECT count(*) FROM usage_hours")).scalar() == 0
            if engine.dialect.name == "postgresql":
                assert all(conn.execute(sa.text(f"SELECT count(*) FROM org_{n}.usage_hours"))
                           .scalar() for n in ("acme", "beta"))
    finally:
        engine.dispose()
    if state_url.startswith("sqlite"):
        assert (tmp_path / "state.acme.db").exists() and (tmp_path / "state.beta.db").exists()


def test_the_daemon_ticks_each_organization_as_its_own_job_once_its_split_holds_it(
        tmp_path: Path, sims: tuple[SimServer, SimServer]) -> None:
    """In `guard run`, each organization ticks on its own (one job each); its first tick
    stands by while the split only joins, then the split takes both (one replica alone) and
    each tick acts, named; a clean exit frees every lease and the membership."""
    acme, beta = sims
    url = f"sqlite:///{tmp_path / 'state.db'}"
    config = write(tmp_path, url, organization("acme", acme.base_url, KEY, tmp_path)
                   + organization("beta", beta.base_url, KEY, tmp_path))
    config.write_text(config.read_text().replace("[state]\n", "[state]\nlease_ttl_s = 5\n"))
    seen: list[tuple[str, bool]] = []
    with wiring.Stores() as stores:
        daemon = Daemon(config, lambda org: wiring.build_organization(org, stores),
                        lambda report, *_rest: seen.append(
                            (report.organization or "", report.standby) if report else ("", True)))
        assert sorted(lane.job for lane in daemon.lanes.values()) == ["tick:acme", "tick:beta"]
        first = [daemon.tick(name) for name in ("acme", "beta")]
        assert [(r.organization, r.standby) for r in first if r] == [("acme", True),
                                                                      ("beta", True)]
        split = daemon._split[1] if daemon._split else None
        assert split is not None
        deadline = time.monotonic() + 30
        while len(split.tokens) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        acting = [daemon.tick(name) for name in ("acme", "beta")]
        assert [(r.organization, r.standby) for r in acting if r] == [("acme", False),
                                                                       ("beta", False)]
        assert seen == [("acme", True), ("beta", True), ("acme", False), ("beta", False)]
        daemon._release()
        for lane in daemon.lanes.values():
            daemon._retire(lane)
        live = Lease(stores.get(url)).live(datetime.now(UTC))
        assert live == {}


def test_a_reload_adds_and_drops_organizations_as_jobs(tmp_path: Path) -> None:
    """SIGHUP with an organization added and one removed: a lane and a job each for the
    organizations now configured, the removed one's job gone; a bad reload changes nothing."""
    url = f"sqlite:///{tmp_path / 'state.db'}"
    fake = "http://127.0.0.1:9"

    def organization_at(name: str) -> str:
        return organization(name, fake, KEY, tmp_path)

    config = write(tmp_path, url, organization_at("acme") + organization_at("beta"))
    daemon = Daemon(config, lambda org: wiring.build_organization(org, wiring.Stores()))
    for lane in daemon.lanes.values():
        daemon._schedule(lane)
    write(tmp_path, url, organization_at("beta") + organization_at("gamma"))
    daemon._reload(signal.SIGHUP, None)
    assert list(daemon.lanes) == ["beta", "gamma"]
    assert sorted(job.id for job in daemon.scheduler.get_jobs()) == ["tick:beta", "tick:gamma"]
    write(tmp_path, url, organization_at("beta") + organization_at("beta"))
    daemon._reload(signal.SIGHUP, None)
    assert list(daemon.lanes) == ["beta", "gamma"]
