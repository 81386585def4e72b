"""open_image / verify_images: every kind of file a user's folder can hold, and the error naming it."""

from __future__ import annotations

import io
import pickle
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from vision_tl.data.images import ImageError, load_rgb, open_image, verify_images


def _jpeg(path, size=(40, 30), color=(200, 30, 30), **save_kw):
    Image.new("RGB", size, color).save(path, "JPEG", quality=95, **save_kw)
    return path


def test_rgb_jpeg_opens_as_rgb_array(tmp_path):
    arr = load_rgb(_jpeg(tmp_path / "a.jpg"))
    assert arr.dtype == np.uint8 and arr.shape == (30, 40, 3)
    assert arr.flags.writeable and arr.flags.c_contiguous  # torch.from_numpy warns on read-only arrays
    assert abs(int(arr[..., 0].mean()) - 200) < 5


@pytest.mark.parametrize(
    "name, data, reason",
    [
        ("empty.jpg", b"", "empty"),
        ("text.png", b"this is not an image at all", "not an image"),
        ("random.jpg", bytes(np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8)), "not an image"),
    ],
)
def test_unreadable_files_raise_image_error_naming_the_file(tmp_path, name, data, reason):
    p = tmp_path / name
    p.write_bytes(data)
    with pytest.raises(ImageError) as info:
        open_image(p)
    assert info.value.path == p
    assert name in str(info.value) and reason in str(info.value)


def test_truncated_jpeg_is_an_error_not_a_half_grey_image(tmp_path):
    rng = np.random.default_rng(0)
    good = tmp_path / "good.jpg"
    Image.fromarray(rng.integers(0, 256, (200, 200, 3), dtype=np.uint8)).save(good, quality=90)
    bad = tmp_path / "truncated.jpg"
    bad.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(ImageError, match="truncated.jpg"):
        open_image(bad)


def test_missing_file_and_folder_are_errors(tmp_path):
    with pytest.raises(ImageError, match="no such file"):
        open_image(tmp_path / "nope.jpg")
    with pytest.raises(ImageError, match="not a regular file"):
        open_image(tmp_path)


def test_cmyk_jpeg_becomes_rgb(tmp_path):
    p = tmp_path / "cmyk.jpg"
    Image.new("CMYK", (20, 10), (0, 255, 255, 0)).save(p)  # pure red in CMYK
    arr = load_rgb(p)
    assert arr.shape == (10, 20, 3)
    assert arr[..., 0].mean() > 200 and arr[..., 1].mean() < 60


def test_16bit_greyscale_png_is_scaled_not_clipped(tmp_path):
    p = tmp_path / "depth.png"
    Image.fromarray(np.full((8, 8), 32768, dtype=np.uint16)).save(p)  # mid-grey in 16 bits
    assert Image.open(p).mode.startswith("I")
    arr = load_rgb(p)
    assert arr.shape == (8, 8, 3) and 120 <= arr.mean() <= 135  # not 255 (clipped) nor 128*257 garbage


def test_transparency_is_composited_on_white(tmp_path):
    rgba = np.zeros((6, 6, 4), dtype=np.uint8)
    rgba[..., 0] = 10  # a hidden dark colour under fully transparent pixels
    rgba[:3, :, 3] = 255  # top half opaque dark red-ish, bottom half transparent
    p = tmp_path / "rgba.png"
    Image.fromarray(rgba, "RGBA").save(p)
    arr = load_rgb(p)
    assert (arr[3:] == 255).all()
    assert (arr[:3, :, 0] == 10).all()


def test_palette_with_transparent_colour_uses_the_matte(tmp_path):
    img = Image.new("P", (4, 4), 0)
    img.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    img.putpixel((0, 0), 1)
    p = tmp_path / "pal.png"
    img.save(p, transparency=0)
    arr = load_rgb(p)
    assert tuple(arr[0, 0]) == (255, 0, 0)
    assert tuple(arr[3, 3]) == (255, 255, 255)


@pytest.mark.parametrize("mode", ["L", "1", "LA", "I;16", "F", "P"])
def test_every_mode_gives_uint8_rgb(tmp_path, mode):
    p = tmp_path / f"img_{mode.replace(';', '')}.{'tiff' if mode == 'F' else 'png'}"
    Image.new(mode, (5, 7)).save(p)
    arr = load_rgb(p)
    assert arr.dtype == np.uint8 and arr.shape == (7, 5, 3)


def test_exif_orientation_is_applied(tmp_path):
    p = tmp_path / "rotated.jpg"
    arr = np.zeros((30, 60, 3), dtype=np.uint8)
    arr[:, :30] = 255  # left half white when stored
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    Image.fromarray(arr).save(p, exif=exif, quality=95)
    out = load_rgb(p)
    assert out.shape == (60, 30, 3)  # portrait once displayed
    assert out[:25].mean() > 200 and out[35:].mean() < 50  # the white half is now on top


def test_exif_rotated_jpeg_with_draft_keeps_enough_pixels(tmp_path):
    p = tmp_path / "rotated_big.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.new("RGB", (800, 400), (0, 128, 0)).save(p, exif=exif)
    out = load_rgb(p, draft_size=(150, 60))  # (h, w) wanted after rotation
    assert out.shape[0] >= 150 and out.shape[1] >= 60
    assert out.shape[0] > out.shape[1]


def test_draft_mode_decodes_big_jpegs_smaller_but_not_below_the_target(tmp_path):
    p = _jpeg(tmp_path / "big.jpg", size=(1000, 800))
    full = open_image(p)
    small = open_image(p, draft_size=(64, 64))
    assert full.size == (1000, 800)
    assert 64 <= min(small.size) and small.size[0] <= 500  # scaled by 1/2..1/8, never under 64
    png = tmp_path / "big.png"
    Image.new("RGB", (200, 100)).save(png)
    assert open_image(png, draft_size=(10, 10)).size == (200, 100)  # draft only applies to JPEG


def _png_header_only(w: int, h: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


def test_decompression_bomb_is_refused_before_decoding(tmp_path):
    p = tmp_path / "bomb.png"
    p.write_bytes(_png_header_only(60_000, 60_000))  # 3.6 gigapixels declared in 57 bytes
    with pytest.raises(ImageError, match="bomb"):
        open_image(p)
    small = tmp_path / "small.png"
    Image.new("RGB", (100, 100)).save(small)
    with pytest.raises(ImageError, match="limit of 5000"):
        open_image(small, max_pixels=5000)


def test_unicode_file_names(tmp_path):
    p = _jpeg(tmp_path / "chat_été_猫 🐱.jpg")
    assert load_rgb(p).shape == (30, 40, 3)


def test_bytes_and_pil_inputs(tmp_path):
    buf = io.BytesIO()
    Image.new("RGBA", (3, 2), (0, 0, 0, 0)).save(buf, "PNG")
    assert load_rgb(buf.getvalue()).shape == (2, 3, 3)
    assert open_image(Image.new("L", (3, 2))).mode == "RGB"
    with pytest.raises(ImageError, match="in-memory"):
        open_image(b"garbage")
    with pytest.raises(TypeError, match="int"):
        open_image(42)  # type: ignore[arg-type]


def test_image_error_survives_pickling_from_a_worker(tmp_path):
    e = ImageError(tmp_path / "x.jpg", "broken")
    e2 = pickle.loads(pickle.dumps(e))
    assert e2.path == e.path and e2.reason == "broken" and str(e2) == str(e)
    assert isinstance(e2, ValueError)


def test_verify_images_returns_exactly_the_bad_files_in_order(tmp_path):
    good = [_jpeg(tmp_path / f"good{i}.jpg") for i in range(3)]
    (tmp_path / "zero.jpg").write_bytes(b"")
    (tmp_path / "junk.png").write_bytes(b"junk")
    files = [good[0], tmp_path / "zero.jpg", good[1], tmp_path / "junk.png", good[2]]
    assert verify_images(files) == [tmp_path / "zero.jpg", tmp_path / "junk.png"]
    assert verify_images(good) == []
