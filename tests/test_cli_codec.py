"""`samic compress` / `samic decompress` through a real subprocess, and atomic output files."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from samic.codec.api import decompress_image
from samic.codec.files import write_atomic
from samic.models import SAMIC

KODAK = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "kodak"


def samic_cli(*args, cwd: Path) -> subprocess.CompletedProcess:
    """The ``samic`` console script, run by this interpreter."""
    launcher = "import sys; from samic.cli import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.run([sys.executable, "-c", launcher, *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=300)


def save_tiny_weights(path: Path, seed: int) -> Path:
    from samic.weights import save_weights

    torch.manual_seed(seed)
    save_weights(SAMIC("samic-tiny").eval(), path)
    return path


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    if not (KODAK / "kodim01.png").is_file():
        pytest.skip(f"shared data not found: {KODAK}")
    folder = tmp_path_factory.mktemp("cli")
    Image.open(KODAK / "kodim01.png").crop((300, 200, 428, 296)).save(folder / "in.png")
    save_tiny_weights(folder / "tiny.safetensors", seed=0)
    save_tiny_weights(folder / "other.safetensors", seed=1)
    (folder / "notes.txt").write_text("not an image\n")
    (folder / "empty.png").write_bytes(b"")
    return folder


@pytest.fixture(scope="module")
def compressed(workdir):
    result = samic_cli("compress", "in.png", "in.samic", "--quality", "0.6", "--weights", "tiny.safetensors",
                       cwd=workdir)
    assert result.returncode == 0, result.stderr
    return result


def test_compress_reports_sizes_and_decompress_matches_the_api(workdir, compressed):
    from samic.weights import load_model

    data = (workdir / "in.samic").read_bytes()
    report = compressed.stdout
    assert f"{len(data)} bytes" in report and "bpp" in report and "header 57 B" in report
    assert f"payload {len(data) - 57} B" in report and "semantic scan" in report
    result = samic_cli("decompress", "in.samic", "out.png", "--weights", "tiny.safetensors", cwd=workdir)
    assert result.returncode == 0, result.stderr
    assert "mse decoder" in result.stdout
    expected = decompress_image(data, load_model(workdir / "tiny.safetensors"))
    assert np.array_equal(np.array(Image.open(workdir / "out.png")), expected)


def test_scan_order_option_reaches_the_file(workdir, compressed):
    from samic.codec.api import read_header
    from samic.weights import load_model

    result = samic_cli("compress", "in.png", "raster.samic", "--quality", "0.6", "--weights", "tiny.safetensors",
                       "--scan-order", "raster", cwd=workdir)
    assert result.returncode == 0, result.stderr
    assert "raster scan" in result.stdout
    data = (workdir / "raster.samic").read_bytes()
    assert read_header(data).scan_order == "raster"
    assert decompress_image(data, load_model(workdir / "tiny.safetensors")).shape == (96, 128, 3)
    result = samic_cli("compress", "in.png", "x.samic", "--quality", "0.6", "--scan-order", "zigzag", cwd=workdir)
    assert result.returncode == 2 and "invalid choice: 'zigzag'" in result.stderr
    assert "Traceback" not in result.stderr


def test_existing_outputs_need_force(workdir, compressed):
    before = (workdir / "in.samic").read_bytes()
    (workdir / "in.samic").write_bytes(before)
    result = samic_cli("compress", "in.png", "in.samic", "-q", "0.2", "--weights", "tiny.safetensors", cwd=workdir)
    assert result.returncode == 2 and result.stderr.strip().splitlines() == [
        "samic compress: error: in.samic exists (use --force to overwrite)"]
    assert (workdir / "in.samic").read_bytes() == before
    result = samic_cli("compress", "in.png", "in.samic", "-q", "0.2", "--weights", "tiny.safetensors", "--force",
                       cwd=workdir)
    assert result.returncode == 0, result.stderr
    assert (workdir / "in.samic").read_bytes() != before
    (workdir / "in.samic").write_bytes(before)


@pytest.mark.parametrize("args, message", [
    (("compress", "missing.png", "x.samic", "-q", "0.5"), "missing.png does not exist"),
    (("compress", "in.png", "x.samic", "-q", "high"), "--quality must be a number"),
    (("compress", "in.png", "x.samic", "-q", "1.5"), "--quality must be in [0, 1]"),
    (("compress", "in.png", "x.samic", "-q", "nan"), "--quality must be in [0, 1]"),
    (("compress", "notes.txt", "x.samic", "-q", "0.5"), "not an image file"),
    (("compress", "empty.png", "x.samic", "-q", "0.5"), "empty (0 bytes)"),
    (("compress", "in.png", "no/such/dir/x.samic", "-q", "0.5"), "folder of no/such/dir/x.samic does not exist"),
    (("compress", "in.png", "x.samic", "-q", "0.5", "--model", "samic-huge"), "neither a model"),
    (("compress", "in.png", "x.samic", "-q", "0.5", "--weights", "nope.safetensors"), "neither a model"),
    (("compress", "in.png", "x.samic", "-q", "0.5", "--weights", "notes.txt"), "notes"),
    (("decompress", "in.png", "x.png"), "not a SAMIC file"),
    (("decompress", "empty.png", "x.png"), "not a SAMIC file"),
    (("decompress", "damaged.samic", "x.png"), "CRC32 mismatch"),
    (("decompress", "in.samic", "x.xyz"), "use .png"),
    (("decompress", "in.samic", "x.png", "--weights", "tiny.safetensors", "--decoder", "perceptual"),
     "no 'perceptual' decoder"),
    (("decompress", "in.samic", "x.png", "--weights", "other.safetensors"), "needs the samic-tiny model"),
])
def test_user_errors_exit_2_with_one_line_and_leave_no_files(workdir, compressed, args, message):
    data = (workdir / "in.samic").read_bytes()
    (workdir / "damaged.samic").write_bytes(data[:60] + bytes([data[60] ^ 0x10]) + data[61:])
    files_before = sorted(workdir.iterdir())
    result = samic_cli(*args, cwd=workdir)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1, result.stderr
    assert lines[0].startswith(f"samic {args[0]}: error: ") and message in lines[0]
    assert sorted(workdir.iterdir()) == files_before


def test_failed_writes_leave_neither_partial_nor_temporary_files(tmp_path):
    target = tmp_path / "out.bin"

    def fail_halfway(file):
        file.write(b"partial")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_atomic(target, fail_halfway)
    assert list(tmp_path.iterdir()) == []
    write_atomic(target, lambda file: file.write(b"first"))
    with pytest.raises(FileExistsError):
        write_atomic(target, lambda file: file.write(b"second"))
    with pytest.raises(OSError):
        write_atomic(target, fail_with_oserror, overwrite=True)
    assert target.read_bytes() == b"first" and list(tmp_path.iterdir()) == [target]
    write_atomic(target, lambda file: file.write(b"second"), overwrite=True)
    assert target.read_bytes() == b"second" and list(tmp_path.iterdir()) == [target]


def fail_with_oserror(file):
    file.write(b"half")
    raise OSError(28, "No space left on device")
