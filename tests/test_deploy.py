"""deploy/: the systemd units, the container image, Kubernetes, Prometheus and Grafana files.

Two kinds of test. Those that always run check what the project itself can check: the configs
validate with the daemon's own loader, the unit and the Dockerfile carry their hardening, the
dashboard is JSON whose queries name metrics the daemon exports, the fallback-sync sidecar
publishes exactly the files the daemon writes, and nothing resembling a real token is checked
in. The others run a real validator (systemd-analyze, hadolint, kubernetes-validate, promtool,
docker-compose, check-jsonschema, yamllint) when it is on PATH, and are skipped, saying so,
when it is not.
"""

from __future__ import annotations

import ast
import importlib.util
import inspect
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from guard.adapters.sinks import atomic_write
from guard.chain import ModelChain
from guard.config import load_settings
from guard.core.fallback import FallbackState, render_env, render_state, state_document

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
SYSTEMD = DEPLOY / "systemd"
DOCKER = DEPLOY / "docker"
K8S = DEPLOY / "kubernetes"
PROMETHEUS = DEPLOY / "prometheus"
DASHBOARD = DEPLOY / "grafana" / "budget-guard.json"
UNIT = SYSTEMD / "budget-guard.service"
K8S_MANIFESTS = sorted(p for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")

# The families guard/metrics.py exports (DESIGN: what alerts and dashboards may use).
METRICS = {
    "budget_guard_spend_usd", "budget_guard_spend_authoritative_usd", "budget_guard_limit_usd",
    "budget_guard_forecast_usd", "budget_guard_burn_rate", "budget_guard_condition_firing",
    "budget_guard_fallback_level", "budget_guard_fallback_info", "budget_guard_data_age_seconds",
    "budget_guard_admin_api_requests_total", "budget_guard_admin_api_errors_total",
    "budget_guard_ticks_total", "budget_guard_tick_duration_seconds_bucket",
    "budget_guard_tick_duration_seconds_sum", "budget_guard_tick_duration_seconds_count",
    "budget_guard_notifications_owed", "budget_guard_last_tick_success_timestamp_seconds",
}
_METRIC_NAME = re.compile(r"\bbudget_guard_[a-z0-9_]+")


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed")
    return path


def _run(*argv: str, cwd: Path | None = None,
         env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=120,
                          check=False)


def _ok(done: subprocess.CompletedProcess[str]) -> None:
    assert done.returncode == 0, f"{done.args}:\n{done.stdout}\n{done.stderr}"


def _yaml() -> Any:
    return pytest.importorskip("yaml", reason="PyYAML is not installed")


# --- the configs load with the daemon's own loader ---------------------------------------------


@pytest.fixture
def secrets_present(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point every secret *_file at a placeholder file; they exist only where deployed."""
    secret = tmp_path / "secret"
    secret.write_text("placeholder-not-a-key\n")
    for name in ("ANTHROPIC__ADMIN_API_KEY_FILE", "SLACK__BOT_TOKEN_FILE",
                 "HTTP__ADMIN_TOKEN_FILE"):
        monkeypatch.setenv(f"GUARD_{name}", str(secret))
    return secret


def _configmap_toml() -> str:
    """guard.toml from configmap.yaml's block scalar, without needing a YAML parser."""
    text = (K8S / "configmap.yaml").read_text()
    block = text.split("  guard.toml: |\n", 1)[1]
    lines = []
    for line in block.splitlines():
        if line and not line.startswith("    "):
            break
        lines.append(line[4:])
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("where", ["systemd", "docker", "kubernetes"])
def test_each_deployment_config_validates(where: str, tmp_path: Path,
                                          secrets_present: Path) -> None:
    path = {"systemd": SYSTEMD / "guard.toml", "docker": DOCKER / "guard.toml"}.get(where)
    if path is None:
        path = tmp_path / "guard.toml"
        path.write_text(_configmap_toml())
    settings = load_settings(path)
    assert settings.fallback.env_file == Path("/run/budget-guard/model.env")
    assert settings.fallback.state_file == Path("/run/budget-guard/fallback.json")
    assert settings.state.url == "sqlite:////var/lib/budget-guard/state.db"
    assert settings.budgets


def test_secret_paths_point_where_each_deployment_mounts_secrets() -> None:
    systemd = (SYSTEMD / "guard.toml").read_text()
    assert 'admin_api_key_file = "/run/credentials/budget-guard.service/admin_api_key"' in systemd
    docker = (DOCKER / "guard.toml").read_text()
    assert 'admin_api_key_file = "/run/secrets/admin_api_key"' in docker
    assert 'admin_api_key_file = "/etc/budget-guard/secrets/admin_api_key"' in _configmap_toml()
    assert 'listen = "127.0.0.1:9184"' in systemd  # only containers listen on every interface
    assert 'listen = "0.0.0.0:9184"' in _configmap_toml()


# --- systemd ------------------------------------------------------------------------------


def _unit_entries(path: Path) -> dict[str, list[tuple[str, str]]]:
    """A unit file's (key, value) pairs by section; repeated keys kept in order."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current = None
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], [])
            continue
        key, equals, value = line.partition("=")
        assert equals and current is not None, f"{path.name}: stray line {raw!r}"
        current.append((key.strip(), value.strip()))
    return sections


def test_the_unit_is_hardened() -> None:
    service = _unit_entries(UNIT)["Service"]
    single = dict(service)
    expected = {
        "Type": "simple", "DynamicUser": "yes", "StateDirectory": "budget-guard",
        "RuntimeDirectory": "budget-guard", "RuntimeDirectoryPreserve": "yes",
        "RuntimeDirectoryMode": "0755", "UMask": "0022", "ProtectSystem": "strict",
        "ProtectHome": "yes", "NoNewPrivileges": "yes", "PrivateTmp": "yes",
        "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX", "CapabilityBoundingSet": "",
        "Restart": "on-failure", "RestartSec": "5", "ExecReload": "/bin/kill -HUP $MAINPID",
        "ExecStart": "/opt/budget-guard/venv/bin/guard run",
        "LoadCredential": "admin_api_key:/etc/budget-guard/credentials/admin_api_key",
    }
    assert {key: single.get(key) for key in expected} == expected
    assert ("SystemCallFilter", "@system-service") in service
    assert ("Environment", "GUARD_CONFIG=/etc/budget-guard/guard.toml") in service
    assert "User" not in single and single.get("AmbientCapabilities", "") == ""


def test_the_application_drop_in_reads_the_env_file_optionally() -> None:
    dropin = _unit_entries(SYSTEMD / "my-app.service.d" / "budget-guard.conf")
    assert ("EnvironmentFile", "-/run/budget-guard/model.env") in dropin["Service"]
    assert ("Wants", "budget-guard.service") in dropin["Unit"]
    assert not [key for key, _ in dropin["Unit"] if key in {"Requires", "BindsTo"}], \
        "the application must not stop with budget-guard"
    path_unit = _unit_entries(SYSTEMD / "my-app-model.path")["Path"]
    assert ("PathChanged", "/run/budget-guard/model.env") in path_unit


def _verifiable_units(tmp_path: Path) -> Path:
    """The units in a directory systemd-analyze can load, ExecStart made to exist here."""
    units = tmp_path / "units"
    (units / "my-app.service.d").mkdir(parents=True)
    guard = Path(sys.executable).with_name("guard")
    executable = str(guard if guard.exists() else shutil.which("true") or "/bin/true")
    (units / UNIT.name).write_text(
        UNIT.read_text().replace("/opt/budget-guard/venv/bin/guard", executable))
    for name in ("my-app-model.path", "my-app-model.service"):
        shutil.copy(SYSTEMD / name, units / name)
    shutil.copy(SYSTEMD / "my-app.service.d" / "budget-guard.conf",
                units / "my-app.service.d" / "budget-guard.conf")
    (units / "my-app.service").write_text(
        "[Unit]\nDescription=an application\n[Service]\nExecStart=/bin/sleep infinity\n")
    return units


def test_systemd_analyze_verify(tmp_path: Path) -> None:
    tool = _tool("systemd-analyze")
    units = _verifiable_units(tmp_path)
    done = _run(tool, "verify", *(str(units / name) for name in (
        "budget-guard.service", "my-app.service", "my-app-model.path", "my-app-model.service")),
        env={**os.environ, "SYSTEMD_UNIT_PATH": f"{units}:", "SYSTEMD_LOG_LEVEL": "warning"})
    _ok(done)
    complaints = [line for line in done.stderr.splitlines() if str(units) in line]
    assert not complaints, "\n".join(complaints)


def test_systemd_analyze_security_exposure_is_low(tmp_path: Path) -> None:
    tool = _tool("systemd-analyze")
    units = _verifiable_units(tmp_path)
    done = _run(tool, "security", "--offline=yes", "--no-pager",
                str(units / "budget-guard.service"))
    if "--offline" in done.stderr:
        pytest.skip("systemd-analyze security has no --offline here (systemd < 250)")
    _ok(done)
    found = re.search(r"Overall exposure level for budget-guard\.service: ([0-9.]+)", done.stdout)
    assert found, done.stdout[-2000:]
    assert float(found[1]) <= 2.0, done.stdout


# --- the container image ----------------------------------------------------------------------


def _dockerfile_stages() -> list[list[str]]:
    """Instructions (continuation lines joined, comments dropped) split at each FROM."""
    logical, pending = [], ""
    for raw in (DOCKER / "Dockerfile").read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    stages: list[list[str]] = []
    for instruction in logical:
        if instruction.upper().startswith("FROM "):
            stages.append([])
        if stages:
            stages[-1].append(instruction)
    return stages


def test_the_image_is_multi_stage_and_its_final_stage_only_runs() -> None:
    stages = _dockerfile_stages()
    assert len(stages) >= 2
    assert stages[0][0].split()[-1] == "builder"
    final = stages[-1]
    text = "\n".join(final)
    users = [line.split()[1] for line in final if line.startswith("USER ")]
    assert users and users[-1].split(":")[0] not in {"0", "root"}
    assert any(line.startswith("HEALTHCHECK ") and "/healthz" in line for line in final)
    assert 'ENTRYPOINT ["guard"]' in final and 'CMD ["run"]' in final
    assert "EXPOSE 9184" in final
    assert any(line.startswith("VOLUME ") and "/var/lib/budget-guard" in line for line in final)
    assert "GUARD_HTTP__LISTEN=0.0.0.0:9184" in text
    copies = [line for line in final if line.startswith(("COPY ", "ADD "))]
    assert copies == ["COPY --from=builder /opt/budget-guard/venv /opt/budget-guard/venv"]
    for tool in ("apt-get", "apk ", "pip install", "gcc", "build-essential", "curl", "wget"):
        assert tool not in text, f"the final stage must not bring in {tool}"


def _healthcheck_code() -> str:
    for line in _dockerfile_stages()[-1]:
        if line.startswith("HEALTHCHECK "):
            argv = json.loads(line[line.index("CMD ") + 4:])
            assert argv[:2] == ["python", "-c"]
            return str(argv[2])
    raise AssertionError("no HEALTHCHECK")


class _Stub(BaseHTTPRequestHandler):
    """Answers every GET with the server's ``reply`` (status, body)."""

    def do_GET(self) -> None:
        status, body = self.server.reply  # type: ignore[attr-defined]
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def stub() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Stub)
    server.reply = (200, b"ok")  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.mark.parametrize(("status", "healthy"), [(200, True), (503, False)])
def test_the_healthcheck_asks_healthz(stub: ThreadingHTTPServer, status: int,
                                      healthy: bool) -> None:
    code = _healthcheck_code()
    assert "http://127.0.0.1:9184/healthz" in code
    stub.reply = (status, b"ok")  # type: ignore[attr-defined]
    port = stub.server_address[1]
    done = _run(sys.executable, "-c", code.replace(":9184/", f":{port}/"))
    assert (done.returncode == 0) is healthy, done.stderr


def test_the_healthcheck_fails_when_nothing_listens(stub: ThreadingHTTPServer) -> None:
    port = stub.server_address[1]
    stub.shutdown()
    stub.server_close()
    done = _run(sys.executable, "-c", _healthcheck_code().replace(":9184/", f":{port}/"))
    assert done.returncode != 0


def test_the_build_context_is_filtered() -> None:
    ignore = (DOCKER / "Dockerfile.dockerignore").read_text().split()
    assert ignore[ignore.index("*"):][:4] == ["*", "!pyproject.toml", "!README.md", "!guard/"]


def test_hadolint() -> None:
    _ok(_run(_tool("hadolint"), str(DOCKER / "Dockerfile")))


def test_compose_shares_the_fallback_read_only() -> None:
    compose = _yaml().safe_load((DOCKER / "compose.yaml").read_text())
    guard, app = compose["services"]["budget-guard"], compose["services"]["my-app"]
    assert "fallback:/run/budget-guard" in guard["volumes"]
    assert "fallback:/run/budget-guard:ro" in app["volumes"]
    assert guard["secrets"] == ["admin_api_key"]
    assert compose["secrets"]["admin_api_key"] == {"file": "./secrets/admin_api_key"}
    assert guard["ports"] == ["127.0.0.1:9184:9184"]
    assert app["healthcheck"] == {"disable": True}
    for service in (guard, app):
        assert service["read_only"] is True and service["cap_drop"] == ["ALL"]


def test_docker_compose_config() -> None:
    tool = _tool("docker-compose")
    _ok(_run(tool, "-f", str(DOCKER / "compose.yaml"), "config", "-q", cwd=DOCKER))


def test_compose_spec_schema() -> None:
    tool = _tool("check-jsonschema")
    _ok(_run(tool, "--builtin-schema", "vendor.compose-spec", str(DOCKER / "compose.yaml")))


# --- Kubernetes -------------------------------------------------------------------------------


def _documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in _yaml().safe_load_all(path.read_text()) if doc]


def test_kustomization_lists_every_manifest_but_the_templates() -> None:
    kustomization = _yaml().safe_load((K8S / "kustomization.yaml").read_text())
    listed = set(kustomization["resources"])
    assert listed == {p.name for p in K8S_MANIFESTS} - {"secret.yaml", "app-example.yaml"}


def test_the_deployment_runs_restricted_with_probes() -> None:
    (deployment,) = _documents(K8S / "deployment.yaml")
    spec = deployment["spec"]
    assert spec["replicas"] == 1 and spec["strategy"]["type"] == "Recreate"
    pod = spec["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001
    assert pod["automountServiceAccountToken"] is False
    (container,) = pod["containers"]
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["resources"]["requests"] and container["resources"]["limits"]
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes[mounts["/var/lib/budget-guard"]]["persistentVolumeClaim"] == {
        "claimName": "budget-guard-state"}
    assert volumes[mounts["/etc/budget-guard/secrets"]]["secret"]["secretName"] == "budget-guard"
    env = {e["name"]: e["value"] for e in container["env"]}
    config_dir = Path(env["GUARD_CONFIG"]).parent
    assert volumes[mounts[str(config_dir)]]["configMap"]["name"] == "budget-guard-config"


def test_the_service_publishes_metrics_even_when_not_ready() -> None:
    (service,) = _documents(K8S / "service.yaml")
    annotations = service["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == "9184"
    assert service["spec"]["publishNotReadyAddresses"] is True
    assert service["spec"]["ports"] == [
        {"name": "http", "port": 9184, "targetPort": "http", "protocol": "TCP"}]


def test_the_secret_template_holds_only_placeholders() -> None:
    (secret,) = _documents(K8S / "secret.yaml")
    assert secret["stringData"]
    assert all(value.startswith("REPLACE_WITH_") for value in secret["stringData"].values())


def test_the_sidecar_configmap_embeds_the_script_verbatim() -> None:
    configmap = _documents(K8S / "app-example.yaml")[0]
    assert configmap["data"]["fallback-sync.py"] == (K8S / "fallback-sync.py").read_text()


def test_kubernetes_validate() -> None:
    tool = _tool("kubernetes-validate")
    _ok(_run(tool, "--strict", *map(str, K8S_MANIFESTS)))


# --- the fallback-sync sidecar publishes what the daemon would write ------------------------


def _state(**changes: Any) -> FallbackState:
    fields: dict[str, Any] = {
        "source": "auto", "updated_at": datetime(2026, 3, 12, 14, 5, tzinfo=UTC),
        "reason": "soft_reached on org-monthly", "firing": ("soft_reached",)} | changes
    return FallbackState.build(["opus", "sonnet", "haiku"], {
        "opus": "claude-opus-4-7", "sonnet": "claude-sonnet-4-6", "haiku": "claude-haiku-4-5"},
        1, **fields)


def _sync(directory: Path, port: int) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "GUARD_FALLBACK_URL": f"http://127.0.0.1:{port}/v1/fallback",
           "GUARD_SYNC_DIR": str(directory), "GUARD_SYNC_TIMEOUT_S": "5"}
    return _run(sys.executable, str(K8S / "fallback-sync.py"), "--once", env=env)


def test_fallback_sync_writes_the_daemons_files(stub: ThreadingHTTPServer,
                                                tmp_path: Path) -> None:
    state = _state()
    stub.reply = (200, json.dumps(state_document(state)).encode())  # type: ignore[attr-defined]
    _ok(_sync(tmp_path, stub.server_address[1]))
    assert (tmp_path / "model.env").read_text() == render_env(state, claude_code=True)
    assert (tmp_path / "fallback.json").read_text() == render_state(state)
    assert (tmp_path / "model.env").stat().st_mode & 0o777 == 0o644
    chain = ModelChain(env_file=tmp_path / "model.env")
    assert chain.models() == ("claude-sonnet-4-6", "claude-haiku-4-5")
    assert ModelChain(state_file=tmp_path / "fallback.json").models() == chain.models()


@pytest.mark.parametrize("reply", [
    (503, b'{"error": "no tick has completed yet"}'),
    (200, b"<html>a proxy page</html>"),
    (200, b'{"model": "claude haiku", "chain": ["claude haiku"], "tier": "haiku", "level": 2}'),
])
def test_fallback_sync_keeps_the_last_files_on_a_bad_answer(
        stub: ThreadingHTTPServer, tmp_path: Path, reply: tuple[int, bytes]) -> None:
    state = _state()
    stub.reply = (200, json.dumps(state_document(state)).encode())  # type: ignore[attr-defined]
    _ok(_sync(tmp_path, stub.server_address[1]))
    stub.reply = reply  # type: ignore[attr-defined]
    done = _sync(tmp_path, stub.server_address[1])
    assert done.returncode == 1 and "keeping the last files" in done.stderr
    assert (tmp_path / "model.env").read_text() == render_env(state, claude_code=True)
    assert (tmp_path / "fallback.json").read_text() == render_state(state)


def _load_script(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(path.stem.replace("-", "_"), path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_fallback_sync_renders_pins_like_the_daemon() -> None:
    sync = _load_script(K8S / "fallback-sync.py")
    pinned = _state(source="override", override_by="alice", override_reason="incident",
                    override_expires_at=datetime(2026, 3, 12, 18, 5, tzinfo=UTC))
    document = json.loads(json.dumps(state_document(pinned)))
    assert sync.render_env(document, "MODEL", False) == render_env(pinned, "MODEL")
    assert sync.render_env(document, "MODEL") == render_env(pinned, "MODEL", claude_code=True)
    assert sync.render_state(document) == render_state(pinned)


@given(models=st.lists(st.sampled_from([
    "claude-opus-5-5", "claude-sonnet-5-5", "claude-haiku-5-5", "claude-opus-4-7",
    "vendor/claude-sonnet-4-6@v1", "my-haiku-proxy", "haikus-x", "gpt-x"]),
    min_size=1, max_size=4, unique=True), data=st.data())
def test_fallback_sync_caps_claude_code_like_the_daemon(models: list[str],
                                                        data: st.DataObject) -> None:
    """Whatever the chain, the sidecar's Claude Code variables are the daemon's."""
    sync = _load_script(K8S / "fallback-sync.py")
    tiers = [f"t{i}" for i in range(len(models))]
    level = data.draw(st.integers(0, len(tiers) - 1))
    state = FallbackState.build(tiers, dict(zip(tiers, models, strict=True)), level,
                                source="auto", updated_at=datetime(2026, 3, 12, tzinfo=UTC),
                                reason="x")
    document = json.loads(json.dumps(state_document(state)))
    assert sync.render_env(document, "ANTHROPIC_MODEL") == render_env(state, claude_code=True)


def _definition(function: Callable[..., Any]) -> ast.FunctionDef:
    """``function``'s ``def`` as parsed from its module's source."""
    (definition,) = ast.parse(textwrap.dedent(inspect.getsource(function))).body
    assert isinstance(definition, ast.FunctionDef)
    return definition


def _assert_same_code(copy: Callable[..., Any], original: Callable[..., Any]) -> None:
    """``copy`` has ``original``'s def, and each global it uses is the same (or a same copy)."""
    # The names are the same on both sides, so no normalising: ast.dump of the whole def (name,
    # signature, docstring, body; not comments or layout) must be equal.
    assert ast.dump(_definition(copy)) == ast.dump(_definition(original)), (
        f"fallback-sync.py's {copy.__name__} is no longer a copy of guard.adapters.sinks'")
    copied, used = inspect.getclosurevars(copy), inspect.getclosurevars(original)
    assert copied.builtins == used.builtins
    assert copied.globals.keys() == used.globals.keys(), copy.__name__
    for name, value in used.globals.items():
        if inspect.isfunction(value):
            _assert_same_code(copied.globals[name], value)
        else:  # os, tempfile, Path
            assert copied.globals[name] == value, f"{copy.__name__} uses a different {name}"


def test_fallback_sync_atomic_write_is_a_copy_of_the_daemons() -> None:
    """The sidecar's atomic_write and everything it calls are the daemon's code, unchanged."""
    sync = _load_script(K8S / "fallback-sync.py")
    _assert_same_code(sync.atomic_write, atomic_write)


def _atomic_write_steps(write: Callable[[Path, str], bool], root: Path) -> list[tuple[Any, ...]]:
    """What ``write`` returns, leaves on disk and fsyncs at each step of one scenario."""
    target = root / "run" / "model.env"
    synced: list[str] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        synced.append("directory" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file")
        real_fsync(fd)

    def broken_replace(source: str, destination: Path) -> None:
        raise OSError("disk full")

    def observe(result: object, *more: object) -> tuple[Any, ...]:
        observed = (result, target.read_bytes(), stat.S_IMODE(target.stat().st_mode),
                    sorted(os.listdir(target.parent)), [*synced], *more)
        synced.clear()
        return observed

    steps = []
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(os, "fsync", fsync)
        steps.append(observe(write(target, "A=1\n")))  # run/ does not exist yet
        os.utime(target, ns=(10**9, 10**9))
        inode = target.stat().st_ino
        steps.append(observe(write(target, "A=1\n"), target.stat().st_ino == inode,
                             target.stat().st_mtime_ns))
        steps.append(observe(write(target, "A=2\n"), target.stat().st_ino == inode))
        patch.setattr(os, "replace", broken_replace)
        with pytest.raises(OSError, match="disk full"):
            write(target, "A=3\n")
        steps.append(observe("raised"))
    return steps


def test_fallback_sync_atomic_write_behaves_like_the_daemons(tmp_path: Path) -> None:
    """Both writes make the file 0600 (the default mode) by rename, fsync it and its
    directory, skip equal content and leave no temp file, even when the rename fails."""
    sync = _load_script(K8S / "fallback-sync.py")
    expected = [
        (True, b"A=1\n", 0o600, ["model.env"], ["file", "directory"]),
        (False, b"A=1\n", 0o600, ["model.env"], [], True, 10**9),
        (True, b"A=2\n", 0o600, ["model.env"], ["file", "directory"], False),
        ("raised", b"A=2\n", 0o600, ["model.env"], ["file"]),
    ]
    assert _atomic_write_steps(atomic_write, tmp_path / "daemon") == expected
    assert _atomic_write_steps(sync.atomic_write, tmp_path / "sidecar") == expected


# --- Prometheus and Grafana ----------------------------------------------------------------


def _dashboard_exprs() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [target["expr"] for panel in dashboard["panels"]
            for target in panel.get("targets", [])]


def test_the_dashboard_is_well_formed() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] == "budget-guard" and dashboard["schemaVersion"] >= 36
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    titles = " ".join(panel["title"].lower() for panel in dashboard["panels"])
    for topic in ("spend", "forecast", "fallback level", "data age", "admin api",
                  "tick duration"):
        assert topic in titles
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            used = set(re.findall(r"\$(\w+)", target["expr"])) - {"__rate_interval"}
            assert used <= variables, f"{panel['title']}: unknown variables {used - variables}"
            assert target["datasource"]["uid"] == "${datasource}"


def test_alerts_and_dashboard_use_only_exported_metrics() -> None:
    alerts = (PROMETHEUS / "alerts.yaml").read_text()
    used = set(_METRIC_NAME.findall(alerts + "\n".join(_dashboard_exprs())))
    assert used <= METRICS, f"not exported: {sorted(used - METRICS)}"
    for name in ("budget_guard_spend_usd", "budget_guard_limit_usd", "budget_guard_forecast_usd",
                 "budget_guard_fallback_level", "budget_guard_data_age_seconds",
                 "budget_guard_admin_api_errors_total", "budget_guard_notifications_owed",
                 "budget_guard_last_tick_success_timestamp_seconds"):
        assert name in used


def test_the_metric_list_matches_the_daemon() -> None:
    metrics = pytest.importorskip("guard.entry.metrics",
                                  reason="guard.entry.metrics is not importable")
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"),
                "gauge": ("",)}
    exported = {family.name + suffix for family in metrics.Metrics().registry.collect()
                for suffix in suffixes.get(family.type, ("",))}
    assert exported >= METRICS, f"no longer exported: {sorted(METRICS - exported)}"


def test_promtool_check_rules() -> None:
    _ok(_run(_tool("promtool"), "check", "rules", str(PROMETHEUS / "alerts.yaml")))


def test_promtool_test_rules() -> None:
    _ok(_run(_tool("promtool"), "test", "rules", "alerts.test.yaml", cwd=PROMETHEUS))


def test_promtool_check_config() -> None:
    _ok(_run(_tool("promtool"), "check", "config", "prometheus.yml", cwd=PROMETHEUS))


def test_promtool_parses_every_dashboard_query(tmp_path: Path) -> None:
    tool = _tool("promtool")
    rules = [{"record": f"dashboard:query_{i}",
              "expr": expr.replace("$__rate_interval", "5m").replace("$budget", ".*")}
             for i, expr in enumerate(_dashboard_exprs())]
    path = tmp_path / "dashboard-rules.json"  # JSON is YAML: no YAML library needed
    path.write_text(json.dumps({"groups": [{"name": "dashboard", "rules": rules}]}))
    _ok(_run(tool, "check", "rules", str(path)))


# --- every file ------------------------------------------------------------------------------


_TOKEN_LIKE = re.compile("|".join((
    r"sk-ant-[a-z]+\d*-[A-Za-z0-9_-]{20,}",   # Anthropic keys (admin and API)
    r"xox[abposr]-\d+-[A-Za-z0-9-]{8,}",      # Slack bot/user tokens
    r"xapp-\d-[A-Za-z0-9-]{8,}",              # Slack app-level tokens
    r"hooks\.slack\.com/services/T[A-Z0-9]+/",  # Slack webhooks
    r"-----BEGIN [A-Z ]*PRIVATE KEY-----",
)))


def test_no_token_looking_strings_are_checked_in() -> None:
    files = [p for p in DEPLOY.rglob("*") if p.is_file()]
    assert len(files) > 20
    leaks = [f"{p.relative_to(ROOT)}: {m[0]}" for p in files
             for m in _TOKEN_LIKE.finditer(p.read_text(errors="replace"))]
    assert not leaks, leaks


def test_yamllint() -> None:
    tool = _tool("yamllint")
    _ok(_run(tool, "--strict", "-c", str(DEPLOY / ".yamllint.yaml"), str(DEPLOY)))


def test_every_yaml_file_parses() -> None:
    yaml = _yaml()
    for path in DEPLOY.rglob("*.yaml"):
        assert list(yaml.safe_load_all(path.read_text())), path
    assert yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
