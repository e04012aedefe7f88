"""The worker image for the container tests: built once per session by the project's own script."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.container.pod import REPO, skip_unless_runtime
from tests.helm.tooling import CHART, helm_binary

BUILD_TIMEOUT_S = 1800  # cold: Debian base (mmdebstrap) + pip from PyPI on 2 busy cores


def chart_image() -> str:
    """The image reference the chart renders by default: <repository>:<appVersion>."""
    app_version = yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"]
    repository = yaml.safe_load((CHART / "values.yaml").read_text())["image"]["repository"]
    return f"{repository}:{app_version}"


@pytest.fixture(scope="session")
def image() -> Iterator[str]:
    """scripts/build-image with the chart's tag (every layer cached after the first build)."""
    skip_unless_runtime()
    helm_binary()  # the tests render the chart; fail/skip early with the setup hint when helm is missing
    tag = chart_image()
    t0 = time.monotonic()
    proc = subprocess.run(["bash", str(REPO / "scripts" / "build-image"), tag], capture_output=True, text=True,
                          timeout=BUILD_TIMEOUT_S)
    assert proc.returncode == 0, f"scripts/build-image failed:\n{proc.stderr[-6000:]}"
    print(f"\n[image] scripts/build-image {tag}: {time.monotonic() - t0:.1f}s\n{proc.stdout}")
    yield tag


@pytest.fixture
def container_dir(tmp_path: Path) -> Path:
    """Host-side files of a container (Secret volumes); readable by the container's uid through its group."""
    directory = tmp_path / "container"
    directory.mkdir()
    directory.chmod(0o755)
    tmp_path.chmod(0o755)
    return directory
