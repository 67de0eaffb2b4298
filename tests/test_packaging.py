"""The distribution as a user gets it: a wheel that holds only `srvp/`, installs and runs outside the checkout
beside a user's own `envs/`, `agents/`, ... packages, extras whose absence is one line, one version."""

from __future__ import annotations

import email
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import srvp
from tests.mnist_files import write_fake_mnist

REPO = Path(__file__).resolve().parents[1]
FOLDERS = ("worldmodel", "common", "video_pred", "envs", "agents", "configs")
"""Top-level folders of the checkout that the wheel holds as srvp.<folder>."""
GENERIC = ("envs", "agents", "common", "configs", "worldmodel")
"""Names a user's project (or another distribution) is likely to own: the user's folder defines each of them."""
SCRIPTS = {
    "srvp-train": "srvp.cli:train",
    "srvp-eval": "srvp.cli:evaluate",
    "srvp-prepare": "srvp.cli:prepare",
    "srvp-figures": "srvp.cli:figures",
    "srvp-control": "srvp.cli:control",
}


def run(command: list[str], **kwargs) -> subprocess.CompletedProcess:
    """Run `command`, failing with the end of its output when it fails."""
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, **kwargs)
    assert result.returncode == 0, f"{' '.join(map(str, command))}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel built from a copy of the sources (a build in the checkout would leave build/ behind, and files
    deleted since the last build would ship from it)."""
    source = tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(REPO / name, source / name)
    for folder in ("srvp", *FOLDERS):
        shutil.copytree(REPO / folder, source / folder, ignore=shutil.ignore_patterns("__pycache__"))
    dist = tmp_path_factory.mktemp("dist")
    # Without build isolation: the test environment's setuptools builds it, so no package registry is needed.
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(dist), str(source)])
    (built,) = dist.glob("*.whl")
    return built


@pytest.fixture(scope="module")
def site(wheel, tmp_path_factory) -> Path:
    """The wheel installed without dependencies into a folder of its own (they come from the test environment)."""
    target = tmp_path_factory.mktemp("site")
    pip_install = [sys.executable, "-m", "pip", "install", "--no-deps", "--no-compile", "-q", "--target"]
    run([*pip_install, str(target), str(wheel)])
    return target


def test_wheel_holds_only_srvp_with_its_configs_license_and_typed_marker(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    dist_info = f"srvp-{srvp.__version__}.dist-info/"
    assert wheel.name == f"srvp-{srvp.__version__}-py3-none-any.whl"
    assert sorted(name for name in names if not name.startswith(("srvp/", dist_info))) == []
    shipped = {f"srvp/{path.relative_to(REPO / 'srvp')}" for path in (REPO / "srvp").glob("*.py")}
    for folder in FOLDERS:
        for path in (REPO / folder).rglob("*"):
            if path.suffix in {".py", ".yaml"} and "__pycache__" not in path.parts:
                shipped.add(f"srvp/{folder}/{path.relative_to(REPO / folder)}")
    assert any(name.endswith(".yaml") for name in shipped)
    assert sorted(shipped - names) == [], "modules or configs missing from the wheel: list them in pyproject.toml"
    assert "srvp/py.typed" in names
    with zipfile.ZipFile(wheel) as archive:
        assert archive.read(f"{dist_info}licenses/LICENSE") == (REPO / "LICENSE").read_bytes()
        assert archive.read(f"{dist_info}top_level.txt").decode().split() == ["srvp"]
        metadata = email.message_from_bytes(archive.read(f"{dist_info}METADATA"))
        entry_points = archive.read(f"{dist_info}entry_points.txt").decode()
    assert metadata["Version"] == srvp.__version__
    assert metadata["License-Expression"] == "Apache-2.0"
    assert {"video", "control", "all"} <= set(metadata.get_all("Provides-Extra"))
    for script, target in SCRIPTS.items():
        assert f"{script} = {target}" in entry_points


@pytest.mark.slow
def test_installed_wheel_runs_beside_a_users_own_packages(site, tmp_path):
    """From a project that owns `envs`, `agents`, `common`, `configs` and `worldmodel`, the installed wheel (not
    the checkout) imports, trains and plans; neither side reaches the other's modules."""
    user = tmp_path / "project"
    for name in GENERIC:
        (user / name).mkdir(parents=True)
        (user / name / "__init__.py").write_text(f"OWNER = 'user-{name}'\n")
    env = {**os.environ, "PYTHONPATH": str(site), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    probe = f"""
import importlib.util, json, sys
import srvp
from srvp import SRVP
import srvp.agents.loop, srvp.configs, srvp.envs, srvp.video_pred.train
reached = [name for name in {GENERIC!r} if name in sys.modules]
srvp_files = {{name: module.__file__ for name, module in list(sys.modules.items())
              if name.split(".")[0] == "srvp" and getattr(module, "__file__", None)}}
import envs, agents, common, configs, worldmodel
print(json.dumps({{
    "srvp": srvp.__file__, "SRVP": sys.modules[SRVP.__module__].__file__, "reached": reached,
    "srvp_files": srvp_files, "owners": {{name: sys.modules[name].OWNER for name in {GENERIC!r}}},
    "user_files": {{name: sys.modules[name].__file__ for name in {GENERIC!r}}},
    "agents_loop": importlib.util.find_spec("agents.loop") is not None, "envs_make_env": hasattr(envs, "make_env"),
    "srvp_make_env": callable(srvp.envs.make_env),
}}))
"""
    found = json.loads(run([sys.executable, "-c", probe], cwd=user, env=env).stdout.splitlines()[-1])
    assert Path(found["srvp"]) == site / "srvp" / "__init__.py"
    assert Path(found["SRVP"]).is_relative_to(site)
    outside = {name: file for name, file in found["srvp_files"].items() if not Path(file).is_relative_to(site)}
    assert outside == {}, "modules imported from the checkout instead of the installed wheel"
    assert len(found["srvp_files"]) > 20
    # srvp imported none of the user's names, and the user's names are theirs, without srvp's contents.
    assert found["reached"] == []
    assert found["owners"] == {name: f"user-{name}" for name in GENERIC}
    assert all(Path(file).is_relative_to(user) for file in found["user_files"].values())
    assert not found["agents_loop"] and not found["envs_make_env"] and found["srvp_make_env"]

    # The installed console script, with the user's folder on the path as well.
    mnist = write_fake_mnist(tmp_path / "mnist", count=40)
    train_run = tmp_path / "train-run"
    trained = run(
        [
            str(site / "bin" / "srvp-train"),
            "debug=tiny",
            f"hydra.run.dir={train_run}",
            f"dataset.mnist_dir={mnist}",
            "dataset.verify_md5=false",
            f"dataset.cache_dir={tmp_path / 'cache'}",
            "device=cpu",
        ],
        cwd=user,
        env={**env, "PYTHONPATH": os.pathsep.join([str(site), str(user)])},
    )
    assert f"checkpoint: {train_run / 'checkpoints' / 'last.pt'}" in trained.stdout
    assert (train_run / "checkpoints" / "last.pt").is_file()

    # `python -m` from inside the user's project: its folder comes first on sys.path.
    control_run = tmp_path / "control-run"
    controlled = run(
        [
            sys.executable,
            "-m",
            "srvp.agents.train",
            "debug=control_tiny",
            "loop.max_episode_steps=5",
            f"run_dir={control_run}",
        ],
        cwd=user,
        env=env,
    )
    assert "eval_return=" in controlled.stdout.splitlines()[-1]
    assert (control_run / "checkpoints" / "last.pt").is_file() and (control_run / "buffer" / "index.json").is_file()
    installed = {dist.metadata["Name"]: dist.version for dist in importlib.metadata.distributions(path=[str(site)])}
    assert installed == {"srvp": srvp.__version__}


EXTRA_MODULES = ("av", "google_crc32c", "gymnasium", "dm_control", "mujoco")


@pytest.mark.parametrize(
    ("missing", "module", "message"),
    [
        ("gymnasium", "srvp.envs", "srvp.envs needs gymnasium: pip install 'srvp[control]'"),
        ("dm_control", "srvp.agents.loop", "srvp.agents needs dm_control: pip install 'srvp[control]'"),
        ("mujoco", "srvp.envs", "srvp.envs needs mujoco: pip install 'srvp[control]'"),
        ("av", "srvp.video_pred.data.avdecode", "(srvp.video_pred.data.avdecode) needs av: pip install 'srvp[video]'"),
        ("av", "srvp.video_pred.prepare", "srvp-prepare needs av: pip install 'srvp[video]'"),
        (
            "google_crc32c",
            "srvp.video_pred.data.tfrecord",
            "(srvp.video_pred.data.tfrecord) needs google_crc32c: pip install 'srvp[video]'",
        ),
    ],
)
def test_a_missing_extra_is_one_line_naming_the_pip_command(missing, module, message):
    # None in sys.modules makes `import missing` fail as if the package were not installed.
    code = f"import sys; sys.modules[{missing!r}] = None; import {module}"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert result.returncode == 1
    last_line = result.stderr.strip().splitlines()[-1]
    assert last_line.startswith("ImportError: ") and last_line.endswith(message), result.stderr[-2000:]


@pytest.mark.parametrize(
    ("missing", "script", "message"),
    [
        ("gymnasium", "control", "srvp-control: error: srvp.agents needs gymnasium: pip install 'srvp[control]'"),
        ("av", "prepare", "srvp-prepare: error: srvp-prepare needs av: pip install 'srvp[video]'"),
    ],
)
def test_a_console_script_without_its_extra_prints_only_that_line(missing, script, message):
    """The console scripts (srvp.cli) import their entry point when run: no traceback above the line."""
    code = f"import sys; sys.modules[{missing!r}] = None; sys.argv = ['x']; from srvp import cli; cli.{script}()"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert result.returncode == 1
    assert result.stderr.strip() == message, result.stderr[-2000:]


def test_core_imports_without_any_extra():
    """Training, evaluation and figures on Moving MNIST need none of the extras' packages."""
    blocked = "".join(f"sys.modules[{name!r}] = None; " for name in EXTRA_MODULES)
    code = (
        f"import sys; {blocked}"
        "import srvp, srvp.video_pred.train, srvp.video_pred.evaluate, srvp.video_pred.figures, srvp.common.logger; "
        "print(srvp.SRVP.__name__)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["SRVP"]


def test_version_is_the_installed_metadata_version(tmp_path):
    result = subprocess.run(
        [sys.executable, "-c", "import srvp; print(srvp.__version__)"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == importlib.metadata.version("srvp") == srvp.__version__
