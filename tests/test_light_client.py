"""The light client distribution ``fosgate-client`` (clients/python): nothing heavy, its own wheel in a clean
virtual environment, and the Fiji macros working with only it installed."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from test_fiji_macros import IJ_JAR, JAVA, XVFB, read_kv
from test_review_clients import proposals  # noqa: F401  (fixture)

from fosgate_client.v1 import fosgate_pb2 as pb

ROOT = Path(__file__).resolve().parents[1]
CLIENT = ROOT / "clients" / "python"
HEAVY = ("fosgate", "tensorflow", "keras", "dask", "distributed", "rasterio", "skimage", "shapely", "scipy",
         "sklearn", "torch", "zarr", "matplotlib")


def test_client_names_follow_the_server():
    from fosgate import names as server
    from fosgate_client import names as client

    assert client.IMAGE_SUFFIXES == server.IMAGE_SUFFIXES and client.MAX_NAME_CHARS == server.MAX_NAME_CHARS
    for name in ["a.tif", "slide 1.OME.TIFF", "../../x.png", "Ω-scan.jpg", "x" * 300 + ".ome.tif", "", ".hidden",
                 "no_suffix", "a/b\\c.btf"]:
        assert client.safe_name(name) == server.safe_name(name)
        assert client.stem_of(name) == server.stem_of(name) and client.image_suffix(name) == server.image_suffix(name)


def test_client_cli_imports_nothing_heavy():
    """Parsing every command and importing the client loads no server or heavy module."""
    code = ("import sys, fosgate_client.cli as c, fosgate_client.client, fosgate_client.v1.fosgate_pb2_grpc\n"
            "c.build_parser().parse_args(['review', 'next', '--slide', 'sl_x', '--out', 'o'])\n"
            f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))\n")
    env = dict(os.environ, PYTHONPATH=str(CLIENT))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_server_commands_say_what_to_install(tmp_path):
    """With only the client, `fosgate serve` says to install the server distribution (simulated by hiding it)."""
    code = ("import sys, importlib.abc\n"
            "class Hide(importlib.abc.MetaPathFinder):\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name == 'fosgate' or name.startswith('fosgate.'):\n"
            "            raise ModuleNotFoundError(\"No module named 'fosgate'\", name='fosgate')\n"
            "sys.meta_path.insert(0, Hide())\n"
            "from fosgate_client.cli import main\n"
            "sys.exit(main(['serve', '--port', '0']))\n")
    env = dict(os.environ, PYTHONPATH=str(CLIENT))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "fosgate serve needs the fosgate server" in proc.stderr and "pip install fosgate" in proc.stderr


def _du(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink())


@pytest.mark.slow
@pytest.mark.imagej
@pytest.mark.skipif(not (JAVA and XVFB and Path(IJ_JAR).exists()), reason="needs ImageJ and xvfb-run")
def test_client_wheel_in_a_clean_venv_runs_the_review_macro(server, client, proposals, tmp_path):  # noqa: F811
    wheels = tmp_path / "wheels"
    source = tmp_path / "src"  # build from a copy: no build/ or egg-info left in the checkout
    shutil.copytree(CLIENT, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                           "-w", str(wheels), str(source)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    wheel = next(wheels.glob("fosgate_client-*.whl"))
    venv = tmp_path / "venv"
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", str(venv)], check=True, timeout=300)
    site = next((venv / "lib").glob("python3*/site-packages"))
    before = _du(site)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                           str(wheel)], capture_output=True, text=True, timeout=900, env=env)
    if proc.returncode != 0 and "Could not find a version" in proc.stderr + proc.stdout:
        pytest.skip("PyPI is not reachable for the client's dependencies")
    assert proc.returncode == 0, proc.stderr[-3000:]
    installed = _du(site) - before
    print(f"\nfosgate-client wheel {wheel.stat().st_size / 1e3:.0f} kB; installed with its dependencies: "
          f"{installed / 1e6:.1f} MB (site-packages {_du(site) / 1e6:.1f} MB)")
    assert installed < 150e6
    names = {p.name.split("-")[0].lower() for p in site.glob("*.dist-info")}
    assert not names & {"tensorflow", "keras", "dask", "rasterio", "scikit_image", "shapely", "torch", "fosgate"}
    fosgate = venv / "bin" / "fosgate"
    proc = subprocess.run([str(fosgate), "serve"], capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 2 and "pip install fosgate" in proc.stderr

    # a whole (short) review session in ImageJ with only the client installed
    slide_id, _, props = proposals
    decisions = tmp_path / "decisions.txt"
    decisions.write_text("accept\nreject\nstop\n")
    res = tmp_path / "review.txt"
    home = tmp_path / "home"
    home.mkdir()
    args = (f"server=127.0.0.1:{server.port};fosgate={fosgate};reviewer=ana;slide={slide_id};"
            f"decisions={decisions};out={tmp_path / 'work'};result={res}")
    cmd = [XVFB, "-a", JAVA, f"-Duser.home={home}", "-Xmx1g", "-cp", IJ_JAR, "ij.ImageJ", "-ijpath", str(home),
           "-batch", str(ROOT / "fiji_macros" / "Fosgate_Review.ijm"), args]
    proc = subprocess.run(cmd, env=dict(env, HOME=str(home)), capture_output=True, text=True, timeout=600)
    assert res.exists(), proc.stdout + proc.stderr
    kv = read_kv(res)
    assert "error" not in kv, kv
    states = {p.proposal_id: p.state for p in client.list_proposals(slide_id=slide_id)}
    assert states[props[0].proposal_id] == pb.PROPOSAL_STATE_ACCEPTED
    assert states[props[1].proposal_id] == pb.PROPOSAL_STATE_REJECTED
    assert sum(s == pb.PROPOSAL_STATE_PENDING for s in states.values()) == len(props) - 2
    shutil.rmtree(venv, ignore_errors=True)
