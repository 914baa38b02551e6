"""Lazy slide reading across the formats labs have: windows equal the pixels in the file."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
from PIL import Image

from fosgate.core.slides import open_slide, probe
from fosgate.errors import InvalidInput, TooLarge

RNG = np.random.default_rng(0)
GREY8 = RNG.integers(0, 255, (301, 257), dtype=np.uint8)
GREY16 = RNG.integers(0, 65535, (301, 257), dtype=np.uint16)
RGB = RNG.integers(0, 255, (301, 257, 3), dtype=np.uint8)
CYX = RNG.integers(0, 4095, (4, 301, 257), dtype=np.uint16)


def write(path, arr, **kw):
    tifffile.imwrite(path, arr, **kw)
    return path


CASES = {
    "striped-grey8.tif": (lambda p: write(p, GREY8, rowsperstrip=16), GREY8[..., None], None),
    "tiled-grey16.tif": (lambda p: write(p, GREY16, tile=(64, 64), compression="zlib"), GREY16[..., None], None),
    "big.btf": (lambda p: write(p, GREY16, bigtiff=True, tile=(32, 32)), GREY16[..., None], None),
    "rgb.ome.tif": (lambda p: write(p, RGB, photometric="rgb", tile=(64, 64), ome=True), RGB, None),
    "cyx.ome.tif": (lambda p: write(p, CYX, ome=True, metadata={"axes": "CYX"}), CYX[2][..., None], 2),
    "grey.png": (lambda p: Image.fromarray(GREY8).save(p) or p, GREY8[..., None], None),
    "rgb.png": (lambda p: Image.fromarray(RGB).save(p) or p, RGB, None),
    "grey16.png": (lambda p: Image.fromarray(GREY16).save(p) or p, GREY16[..., None], None),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_windows_match_file(tmp_path, name):
    make, expected, channel = CASES[name]
    path = make(tmp_path / name)
    with open_slide(path, channel=channel) as s:
        assert (s.info.height, s.info.width) == (301, 257)
        assert s.info.channels == expected.shape[-1]
        assert s.info.dtype == str(expected.dtype)
        for y0, y1, x0, x1 in [(0, 301, 0, 257), (17, 200, 33, 250), (300, 301, 256, 257), (5, 5, 0, 10)]:
            np.testing.assert_array_equal(s.read(y0, y1, x0, x1), expected[y0:y1, x0:x1])


def test_pixel_size_and_levels(tmp_path):
    p = tmp_path / "px.ome.tif"
    tifffile.imwrite(p, GREY8, ome=True, metadata={"axes": "YX", "PhysicalSizeX": 0.325, "PhysicalSizeY": 0.325})
    info = probe(p)
    assert info.pixel_size_um == pytest.approx(0.325) and info.format == "ome-tiff" and info.levels == 1


def test_pyramid_reads_full_resolution(tmp_path):
    p = tmp_path / "pyr.ome.tif"
    with tifffile.TiffWriter(p, ome=True) as tw:
        tw.write(GREY16, subifds=1, tile=(64, 64), metadata={"axes": "YX"})
        tw.write(GREY16[::2, ::2], subfiletype=1, tile=(64, 64))
    with open_slide(p) as s:
        assert s.info.levels == 2 and s.info.height == 301
        np.testing.assert_array_equal(s.read(10, 20, 10, 20)[..., 0], GREY16[10:20, 10:20])


def test_bad_channel_and_window(tmp_path):
    p = write(tmp_path / "cyx.tif", CYX, metadata={"axes": "CYX"})
    with pytest.raises(InvalidInput, match="channel 7 does not exist"):
        open_slide(p, channel=7)
    with open_slide(p) as s, pytest.raises(InvalidInput, match="outside"):
        s.read(0, 400, 0, 10)


def test_decompression_bomb_is_refused_before_decoding(tmp_path):
    p = tmp_path / "bomb.png"
    Image.new("L", (30_000, 20_000)).save(p)  # 600 MP of zeros compresses to little
    with pytest.raises(TooLarge, match="megapixels"):
        probe(p)
