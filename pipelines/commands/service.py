"""`make service`: install systemd user units that keep the Dagster daemon and UI running.

Two long-lived processes with one persistent DAGSTER_HOME: `dagster-daemon run` (the capture
sensor, the run queue, run monitoring) and `dagster-webserver` (the UI), both loading the
repository's workspace.yaml with its .venv. Templates and the instance's dagster.yaml are in
service/; this module renders them with this checkout's paths.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

from pipelines.settings import REPO_ROOT
from pipelines.storage.files import private_dirs

TEMPLATES = REPO_ROOT / "service"
UNITS = ("kis-balance-daemon.service", "kis-balance-webserver.service")
INSTANCE_FILE = "dagster.yaml"


def default_dagster_home() -> Path:
    state = os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state"
    return Path(state) / "kis-balance-history" / "dagster"


def default_unit_dir() -> Path:
    config = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(config) / "systemd" / "user"


def _escaped(text: str) -> str:
    if any(c in text for c in '"\\\n'):
        raise ValueError(f"{text!r}: quotes, backslashes or newlines cannot go in a unit file")
    return text.replace("%", "%%")  # systemd's specifier character


def _word(text: str) -> str:
    """One word of ExecStart= or Environment=: quoted when it holds a space."""
    text = _escaped(text)
    return f'"{text}"' if any(c.isspace() for c in text) else text


def render(
    template: str, *, repo: Path, venv: Path, dagster_home: Path, host: str, port: int
) -> str:
    """A unit file from its template in service/."""
    values = {
        "@GENERATED@": f"Written by `make service` from service/{template}; edit that, not this.",
        "@WORKING_DIRECTORY@": _escaped(str(repo)),
        "@DAGSTER_HOME_ENV@": _word(f"DAGSTER_HOME={dagster_home}"),
        "@DAGSTER_DAEMON@": _word(str(venv / "bin" / "dagster-daemon")),
        "@DAGSTER_WEBSERVER@": _word(str(venv / "bin" / "dagster-webserver")),
        "@WORKSPACE@": _word(str(repo / "workspace.yaml")),
        "@HOST@": _word(host),
        "@PORT@": str(port),
    }
    text = (TEMPLATES / template).read_text()
    for placeholder, value in values.items():
        text = text.replace(placeholder, value)
    return text


def install(
    *,
    unit_dir: Path,
    dagster_home: Path,
    venv: Path,
    repo: Path = REPO_ROOT,
    host: str = "127.0.0.1",
    port: int = 3000,
) -> list[Path]:
    """Write the units, and the instance's dagster.yaml into DAGSTER_HOME unless it has one."""
    for program in ("dagster-daemon", "dagster-webserver"):
        if not (venv / "bin" / program).is_file():
            raise FileNotFoundError(f"{venv / 'bin' / program} not found: run `make setup` first")
    unit_dir.mkdir(parents=True, exist_ok=True)
    private_dirs(dagster_home)
    written = []
    for name in UNITS:
        path = unit_dir / name
        path.write_text(
            render(name, repo=repo, venv=venv, dagster_home=dagster_home, host=host, port=port)
        )
        written.append(path)
    instance = dagster_home / INSTANCE_FILE
    if not instance.exists():
        shutil.copyfile(TEMPLATES / INSTANCE_FILE, instance)
        written.append(instance)
    owner_only(dagster_home)
    return written


def owner_only(directory: Path) -> None:
    """Make `directory` and everything in it readable by its owner only (files 0600, folders
    0700), as the service writes them (UMask=0077): also what an older version left open."""
    for folder, _, names in os.walk(directory):
        os.chmod(folder, 0o700)
        for name in names:
            path = os.path.join(folder, name)
            if not os.path.islink(path):
                os.chmod(path, 0o600)


def init_instance(dagster_home: Path, venv: Path) -> None:
    """Create (or upgrade) the instance's storage before the services start: two processes
    creating a fresh SQLite storage at once can corrupt it (alembic_version with two heads)."""
    subprocess.run(
        [str(venv / "bin" / "dagster"), "instance", "migrate"],
        env={**os.environ, "DAGSTER_HOME": str(dagster_home)},
        check=True,
        stdout=subprocess.DEVNULL,
        timeout=300,
        umask=0o077,  # its SQLite files as the service's own: owner-only
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pipelines.commands.service", description=__doc__
    )
    parser.add_argument("--unit-dir", type=Path, default=default_unit_dir())
    parser.add_argument("--dagster-home", type=Path, default=default_dagster_home())
    parser.add_argument("--venv", type=Path, default=Path(sys.prefix))
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=3000)
    args = parser.parse_args(argv)
    dagster_home = args.dagster_home.expanduser().absolute()
    venv = args.venv.expanduser().absolute()
    written = install(
        unit_dir=args.unit_dir.expanduser().absolute(),
        dagster_home=dagster_home,
        venv=venv,
        host=args.host,
        port=args.port,
    )
    for path in written:
        print(f"wrote {path}")
    init_instance(dagster_home, venv)
    print(f"storage of the instance in {dagster_home} created or up to date")
    units = " ".join(name.removesuffix(".service") for name in UNITS)
    print(
        "\nNext:\n"
        "  systemctl --user daemon-reload\n"
        f"  systemctl --user enable --now {units}\n"
        '  loginctl enable-linger "$USER"    # keep them running while you are logged out\n'
        f"  systemctl --user status {units}\n"
        "  journalctl --user -u kis-balance-daemon -f\n"
        f"UI: http://{args.host}:{args.port}  (DAGSTER_HOME={dagster_home})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
