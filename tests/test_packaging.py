"""``pip install .`` gives a working ``fingerd`` command with its templates.

The wheel is built once, as ``pip install .`` builds it (in an isolated
build environment, which needs the package index for setuptools), then
installed without dependencies into a virtual environment that sees this
interpreter's packages (watchdog, ConfigArgParse, irc) but not the
checkout: the command runs from a directory outside it.  The build runs on
a copy of the source, so it leaves no ``build/`` behind in the checkout.
"""

from __future__ import annotations

import os
import shutil
import site
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

import fingerd
from conftest import ROOT

TEMPLATES = ROOT / "fingerd" / "web" / "templates"
IDENTITY = ("--user", "root", "--group", "root") if os.geteuid() == 0 else ()
"""As root the check runs as --user (nobody by default), who cannot reach pytest's private directories."""


def run(*command: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(list(command), cwd=cwd, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    source = out / "source"
    skipped = shutil.ignore_patterns(".*", "build", "*.egg-info", "__pycache__", "bench")
    shutil.copytree(ROOT, source, ignore=skipped)
    built = run(
        sys.executable, "-m", "pip", "wheel", "--no-deps", "--disable-pip-version-check", "--quiet",
        "--wheel-dir", str(out), str(source), cwd=out,
    )
    assert built.returncode == 0, built.stdout + built.stderr
    (wheel,) = out.glob("fingerd-*.whl")
    return wheel


@pytest.fixture(scope="module")
def venv(wheel, tmp_path_factory) -> Path:
    """The wheel alone, in an environment that also sees the packages of the one running the tests.

    Those are where the dependencies are, whether that is the system's Python
    or a virtual environment of its own (``--system-site-packages`` would see
    only the base interpreter's).  They are added as plain paths, so no
    editable install of the checkout found there is activated.
    """
    home = tmp_path_factory.mktemp("venv")
    assert run(sys.executable, "-m", "venv", str(home / "env"), cwd=home).returncode == 0
    purelib = run(str(home / "env" / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))",
                  cwd=home).stdout.strip()
    ours = {sysconfig.get_path("purelib"), sysconfig.get_path("platlib"), *site.getsitepackages()}
    (Path(purelib) / "tests-packages.pth").write_text("".join(f"{path}\n" for path in sorted(ours)))
    installed = run(
        str(home / "env" / "bin" / "python"), "-m", "pip", "install", "--no-deps", "--no-index",
        "--disable-pip-version-check", "--quiet", str(wheel), cwd=home,
    )
    assert installed.returncode == 0, installed.stdout + installed.stderr
    return home


def test_every_package_and_template_is_in_the_wheel(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for init in (ROOT / "fingerd").rglob("__init__.py"):
        assert str(init.relative_to(ROOT)) in names, "a subpackage missing from pyproject.toml"
    for module in (ROOT / "fingerd").rglob("*.py"):
        assert str(module.relative_to(ROOT)) in names
    for template in TEMPLATES.iterdir():
        assert f"fingerd/web/templates/{template.name}" in names
    assert any(name.endswith(".dist-info/entry_points.txt") for name in names)


def test_the_installed_command_runs_from_its_own_files(venv):
    help_text = run(str(venv / "env" / "bin" / "fingerd"), "--help", cwd=venv)
    assert help_text.returncode == 0, help_text.stderr
    assert "--check-config" in help_text.stdout and "--log-peers" in help_text.stdout
    where = run(str(venv / "env" / "bin" / "python"), "-c", "import fingerd; print(fingerd.__file__)", cwd=venv)
    assert where.stdout.startswith(str(venv / "env")), where.stdout + where.stderr


def test_the_installed_command_loads_its_templates(venv):
    """--check-config loads the packaged templates: a missing file would be exit 2."""
    checked = run(
        str(venv / "env" / "bin" / "fingerd"), "--check-config", "--status-file", str(venv / "status"), *IDENTITY,
        cwd=venv,
    )
    assert checked.returncode == 0, checked.stderr
    assert "web-port = 8000" in checked.stdout


def test_fingerd_set_is_the_same_command(venv):
    usage = run(str(venv / "env" / "bin" / "fingerd"), "set", "--help", cwd=venv)
    assert usage.returncode == 0, usage.stderr
    assert "--for" in usage.stdout


def test_the_installed_command_and_the_checkout_say_the_same_version(venv):
    """One version, written in fingerd/__init__.py: the package metadata and --version both read it."""
    installed = run(str(venv / "env" / "bin" / "fingerd"), "--version", cwd=venv)
    checkout = run(sys.executable, str(ROOT / "fingerd.py"), "--version", cwd=venv)
    metadata = run(
        str(venv / "env" / "bin" / "python"), "-c", "from importlib.metadata import version; print(version('fingerd'))",
        cwd=venv,
    )
    assert installed.returncode == 0 and checkout.returncode == 0, installed.stderr + checkout.stderr
    assert installed.stdout == checkout.stdout == f"fingerd {metadata.stdout.strip()}\n"
    assert metadata.stdout.strip() == fingerd.__version__


def test_version_is_a_command_line_option_only(tmp_path):
    """A ``version`` key in a config file is refused, as ``help`` and ``check-config`` are, not obeyed."""
    config = tmp_path / "fingerd.conf"
    config.write_text("version = 1\n")
    refused = run(sys.executable, str(ROOT / "fingerd.py"), "-c", str(config), "--check-config", cwd=tmp_path)
    assert refused.returncode == 2
    assert refused.stderr == f"fingerd: {config}:1: unknown key 'version' (keys are the long options without their dashes)\n"


@pytest.fixture(scope="module")
def bare_venv(wheel, tmp_path_factory) -> Path:
    """The base install alone, dependencies from the package index, in an environment that sees nothing else."""
    home = tmp_path_factory.mktemp("bare")
    assert run(sys.executable, "-m", "venv", str(home / "env"), cwd=home).returncode == 0
    installed = run(
        str(home / "env" / "bin" / "python"), "-m", "pip", "install", "--disable-pip-version-check", "--quiet",
        str(wheel), cwd=home,
    )
    assert installed.returncode == 0, installed.stdout + installed.stderr
    return home


def test_the_base_install_runs_without_the_irc_package(bare_venv):
    """irc is an extra: without it the daemon configures and checks as usual."""
    python = str(bare_venv / "env" / "bin" / "python")
    assert run(python, "-c", "import irc", cwd=bare_venv).returncode != 0, "irc came with the base install"
    checked = run(
        str(bare_venv / "env" / "bin" / "fingerd"), "--check-config", "--status-file", str(bare_venv / "status"),
        *IDENTITY, cwd=bare_venv,
    )
    assert checked.returncode == 0, checked.stderr
    assert "irc-server = \n" in checked.stdout


def test_the_irc_bot_without_the_irc_package_says_what_to_install(bare_venv):
    refused = run(
        str(bare_venv / "env" / "bin" / "fingerd"), "--check-config", "--status-file", str(bare_venv / "status"),
        "--irc-server", "irc.example.org", cwd=bare_venv,
    )
    assert refused.returncode == 2
    assert refused.stderr.splitlines()[-1] == (
        "fingerd: error: argument --irc-server: the IRC bot needs the irc package: pip install 'fingerd[irc]'"
    )
