#!/usr/bin/python3
"""Pillow oracle for the C++ image pipeline tests (tests/model/image_*_test.cpp).

Run with Debian's /usr/bin/python3 (numpy + Pillow 9.4). Each mode works inside a directory
that the C++ test owns:

  decode <dir>     writes test images (PNG through a small independent PNG writer covering every
                   colour type / bit depth / tRNS / interlace combination, plus PNG and JPEG files
                   saved by Pillow itself) and, for each, what Pillow + transformers'
                   convert_to_rgb decode it to: <name>.rgb.npy. Lists them in manifest.txt as
                   "<name> <file>" (an image Pillow cannot decode is left out).
  resize <dir>     reads jobs.txt lines "<name> <out_w> <out_h>" and <name>.npy (uint8 HxWx3),
                   writes <name>.out.npy = Image.fromarray(x).resize((out_w, out_h), BICUBIC).
  normalize <dir>  reads input.npy (uint8 HxWx3) and params.txt ("mean0 mean1 mean2 std0 std1
                   std2"), writes output.npy: float32 CHW exactly as transformers' rescale +
                   normalize compute it.
"""

import os
import struct
import sys
import zlib

import numpy as np
from PIL import Image


def convert_to_rgb(image):
    # transformers' IdeficsImageProcessor convert_to_rgb (v4.44.2).
    if image.mode == "RGB":
        return image
    image_rgba = image.convert("RGBA")
    background = Image.new("RGBA", image_rgba.size, (255, 255, 255))
    alpha_composite = Image.alpha_composite(background, image_rgba)
    return alpha_composite.convert("RGB")


# ----------------------------------------------------------------------------------------------
# Independent PNG writer (filter type 0, optional Adam7).


def _chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _pack_row(samples, bit_depth):
    samples = np.asarray(samples).reshape(-1)
    if bit_depth == 16:
        return samples.astype(">u2").tobytes()
    if bit_depth == 8:
        return samples.astype(np.uint8).tobytes()
    per = 8 // bit_depth
    padded = np.zeros(((len(samples) + per - 1) // per) * per, np.uint8)
    padded[: len(samples)] = samples
    padded = padded.reshape(-1, per)
    out = np.zeros(len(padded), np.uint8)
    for i in range(per):
        out |= (padded[:, i] << (8 - bit_depth * (i + 1))).astype(np.uint8)
    return out.tobytes()


def write_png(path, samples, color_type, bit_depth, plte=None, trns=None, interlace=False):
    """samples: int array [H, W, C] of raw sample values."""
    height, width, _ = samples.shape
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, int(interlace))
    raw = bytearray()
    if not interlace:
        for y in range(height):
            raw += b"\x00" + _pack_row(samples[y], bit_depth)
    else:
        passes = [(0, 0, 8, 8), (0, 4, 8, 8), (4, 0, 8, 4), (0, 2, 4, 4), (2, 0, 4, 2),
                  (0, 1, 2, 2), (1, 0, 2, 1)]  # (row0, col0, row step, col step)
        for row0, col0, row_step, col_step in passes:
            sub = samples[row0::row_step, col0::col_step]
            if sub.shape[0] == 0 or sub.shape[1] == 0:
                continue
            for row in sub:
                raw += b"\x00" + _pack_row(row, bit_depth)
    data = b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr)
    if plte is not None:
        data += _chunk(b"PLTE", np.asarray(plte, np.uint8).tobytes())
    if trns is not None:
        data += _chunk(b"tRNS", trns)
    data += _chunk(b"IDAT", zlib.compress(bytes(raw), 9)) + _chunk(b"IEND", b"")
    with open(path, "wb") as f:
        f.write(data)


def _u16(*values):
    return b"".join(struct.pack(">H", v) for v in values)


def make_decode_suite(out_dir):
    rng = np.random.RandomState(1234)
    files = []  # (name, file)

    def png(name, samples, color_type, bit_depth, **kw):
        write_png(os.path.join(out_dir, name + ".png"), samples, color_type, bit_depth, **kw)
        files.append((name, name + ".png"))

    def rand(h, w, c, bits):
        return rng.randint(0, 1 << bits, size=(h, w, c))

    # Grayscale, every bit depth, with and without tRNS.
    for bits in (1, 2, 4, 8, 16):
        png(f"gray{bits}", rand(11, 13, 1, bits), 0, bits)
        png(f"gray{bits}_interlaced", rand(19, 10, 1, bits), 0, bits, interlace=True)
    png("gray1_trns0", rand(9, 17, 1, 1), 0, 1, trns=_u16(0))
    png("gray1_trns1", rand(9, 17, 1, 1), 0, 1, trns=_u16(1))
    png("gray2_trns2", rand(8, 9, 1, 2), 0, 2, trns=_u16(2))
    png("gray2_trns0", rand(8, 9, 1, 2), 0, 2, trns=_u16(0))
    png("gray4_trns15", rand(8, 9, 1, 4), 0, 4, trns=_u16(15))
    png("gray8_trns", rand(12, 7, 1, 8) % 16 * 17, 0, 8, trns=_u16(34))
    # 16-bit gray: Pillow opens it as mode "I" and clips to 0..255; keep values small enough
    # that the clipping and the tRNS low-byte quirk are visible.
    g16 = rng.randint(0, 600, size=(10, 14, 1))
    g16[0, :6, 0] = [0, 7, 255, 256, 263, 65535]
    png("gray16_small", g16, 0, 16)
    png("gray16_trns7", g16, 0, 16, trns=_u16(7))
    png("gray16_trns263", g16, 0, 16, trns=_u16(263))

    # Truecolour 8/16 with and without tRNS.
    # convert_to_rgb returns RGB-mode images unchanged, so an RGB tRNS colour has no effect.
    rgb8 = rand(10, 15, 3, 8) % 4 * 85
    rgb8[0, :3] = [85, 0, 170]
    png("rgb8", rand(10, 15, 3, 8), 2, 8)
    png("rgb8_trns", rgb8, 2, 8, trns=_u16(85, 0, 170))
    png("rgb8_interlaced", rand(17, 23, 3, 8), 2, 8, interlace=True)
    rgb16 = rand(9, 11, 3, 16)
    rgb16[0, 0] = [0x1203, 0x3404, 0x5605]
    png("rgb16", rgb16, 2, 16)
    png("rgb16_trns", rgb16, 2, 16, trns=_u16(0x0312, 0x0434, 0x0556))
    rgb16_hi = rand(9, 11, 3, 16)
    rgb16_hi[1, 1] = [0x12ff, 0x3400, 0x5601]
    png("rgb16_trns_same", rgb16_hi, 2, 16, trns=_u16(0x12ff, 0x3400, 0x5601))

    # Palette 1/2/4/8 bits, with full, partial and single-index tRNS; a short PLTE.
    for bits in (1, 2, 4, 8):
        n = 1 << bits
        plte = rng.randint(0, 256, size=(n, 3))
        idx = rand(13, 12, 1, bits)
        png(f"pal{bits}", idx, 3, bits, plte=plte)
        alphas = rng.randint(0, 256, size=max(1, n // 2)).astype(np.uint8)
        png(f"pal{bits}_trns_partial", idx, 3, bits, plte=plte, trns=alphas.tobytes())
        single = np.full(n, 255, np.uint8)
        single[n // 2] = 0
        png(f"pal{bits}_trns_single", idx, 3, bits, plte=plte, trns=single.tobytes())
    plte = rng.randint(0, 256, size=(16, 3))
    png("pal4_interlaced", rand(21, 9, 1, 4), 3, 4, plte=plte, interlace=True,
        trns=bytes(range(0, 160, 10)))
    png("pal8_short_plte", rand(7, 9, 1, 8) % 5, 3, 8, plte=rng.randint(0, 256, size=(5, 3)))
    # Indices past the end of PLTE: Pillow's palette keeps its (i, i, i) default there.
    png("pal8_index_beyond_plte", rand(7, 9, 1, 8) % 10, 3, 8,
        plte=rng.randint(0, 256, size=(5, 3)), trns=b"\x80\x00")

    # Gray+alpha and RGBA, 8 and 16 bits.
    png("la8", rand(9, 14, 2, 8), 4, 8)
    png("la16", rand(9, 14, 2, 16), 4, 16)
    png("rgba8", rand(12, 10, 4, 8), 6, 8)
    png("rgba16", rand(12, 10, 4, 16), 6, 16)
    png("rgba16_interlaced", rand(11, 13, 4, 16), 6, 16, interlace=True)
    # Every (colour, alpha) pair once: row = alpha, column = colour value.
    c, a = np.meshgrid(np.arange(256), np.arange(256))
    png("rgba8_all_pairs", np.stack([c, 255 - c, c // 2, a], -1), 6, 8)
    png("tiny_1x1_rgba", np.array([[[10, 20, 30, 77]]]), 6, 8)
    png("row_1x40_gray", rand(1, 40, 1, 8), 0, 8)
    png("col_40x1_rgb", rand(40, 1, 3, 8), 2, 8)

    # Files written by Pillow itself (adaptive PNG filters, Pillow's own tRNS handling).
    def pil(name, image, ext, **save_kw):
        image.save(os.path.join(out_dir, name + "." + ext), **save_kw)
        files.append((name, name + "." + ext))

    y, x = np.mgrid[0:45, 0:61]
    smooth = np.stack([(x * 4) % 256, (y * 5) % 256, ((x + y) * 3) % 256], -1).astype(np.uint8)
    noisy = np.clip(smooth.astype(int) + rng.randint(-20, 21, size=smooth.shape), 0, 255)
    noisy = noisy.astype(np.uint8)
    pil("pil_rgb", Image.fromarray(noisy), "png")
    pil("pil_l", Image.fromarray(noisy[..., 0]), "png")
    pil("pil_la", Image.fromarray(np.stack([noisy[..., 0], noisy[..., 1]], -1), "LA"), "png")
    pil("pil_rgba", Image.fromarray(np.concatenate([noisy, noisy[..., :1]], -1), "RGBA"), "png")
    p_img = Image.fromarray(noisy).quantize(colors=37)
    pil("pil_p_trns", p_img, "png", transparency=3)
    pil("pil_i16", Image.fromarray((noisy[..., 0].astype(np.uint16) * 3)).convert("I;16"), "png")
    for sub in (0, 1, 2):  # 4:4:4, 4:2:2, 4:2:0
        pil(f"jpeg_q75_sub{sub}", Image.fromarray(noisy), "jpg", quality=75, subsampling=sub)
    pil("jpeg_progressive", Image.fromarray(noisy), "jpg", quality=90, progressive=True)
    pil("jpeg_optimized", Image.fromarray(noisy), "jpg", quality=60, optimize=True)
    pil("jpeg_odd_17x9", Image.fromarray(noisy[:9, :17]), "jpg", quality=95)
    pil("jpeg_1x1", Image.fromarray(noisy[:1, :1]), "jpg", quality=95)
    pil("jpeg_gray", Image.fromarray(noisy[..., 1]), "jpg", quality=80)
    pil("jpeg_gray_progressive", Image.fromarray(noisy[..., 2]), "jpg", progressive=True)
    pil("jpeg_cmyk", Image.fromarray(np.concatenate([noisy, noisy[..., 1:2]], -1), "CMYK"), "jpg",
        quality=90)

    # Damaged but complete JPEGs: libjpeg only warns ("Corrupt JPEG data ..."), and Pillow, which
    # ignores libjpeg warnings, still returns an image.
    with open(os.path.join(out_dir, "jpeg_q75_sub2.jpg"), "rb") as f:
        good = bytearray(f.read())
    damaged = bytearray(good)
    damaged[len(damaged) // 2] ^= 0xFF
    damaged[len(damaged) // 2 + 1] ^= 0x31
    extra = good[:-2] + b"\x00\x11\x22" + good[-2:]
    for name, data in (("jpeg_corrupt_entropy", damaged), ("jpeg_extraneous_bytes", extra)):
        with open(os.path.join(out_dir, name + ".jpg"), "wb") as f:
            f.write(bytes(data))
        files.append((name, name + ".jpg"))

    kept = []
    for name, filename in files:
        try:
            with Image.open(os.path.join(out_dir, filename)) as image:
                rgb = np.asarray(convert_to_rgb(image), dtype=np.uint8)
        except Exception as e:  # Pillow itself cannot decode it: nothing to compare against
            print(f"pillow_oracle: skipping {filename}: {type(e).__name__}: {e}", file=sys.stderr)
            continue
        assert rgb.ndim == 3 and rgb.shape[2] == 3, (filename, rgb.shape)
        np.save(os.path.join(out_dir, name + ".rgb.npy"), rgb)
        kept.append(f"{name} {filename}\n")
    with open(os.path.join(out_dir, "manifest.txt"), "w") as f:
        f.writelines(kept)


def resize_jobs(work_dir):
    with open(os.path.join(work_dir, "jobs.txt")) as f:
        for line in f:
            if not line.strip():
                continue
            name, out_w, out_h = line.split()
            arr = np.load(os.path.join(work_dir, name + ".npy"))
            assert arr.dtype == np.uint8 and arr.ndim == 3 and arr.shape[2] == 3
            image = Image.fromarray(arr).resize((int(out_w), int(out_h)), Image.BICUBIC)
            np.save(os.path.join(work_dir, name + ".out.npy"), np.asarray(image, dtype=np.uint8))


def normalize(work_dir):
    image = np.load(os.path.join(work_dir, "input.npy"))
    with open(os.path.join(work_dir, "params.txt")) as f:
        params = [float(v) for v in f.read().split()]
    # transformers: rescale (float64 multiply, cast to float32), normalize with float32 arrays.
    rescaled = (image.astype(np.float64) * (1 / 255)).astype(np.float32)
    mean = np.array(params[:3], dtype=np.float32)
    std = np.array(params[3:], dtype=np.float32)
    out = ((rescaled - mean) / std).transpose(2, 0, 1)
    assert out.dtype == np.float32
    np.save(os.path.join(work_dir, "output.npy"), np.ascontiguousarray(out))


def main():
    if len(sys.argv) != 3 or sys.argv[1] not in ("decode", "resize", "normalize"):
        sys.exit(__doc__)
    mode, work_dir = sys.argv[1], sys.argv[2]
    {"decode": make_decode_suite, "resize": resize_jobs, "normalize": normalize}[mode](work_dir)


if __name__ == "__main__":
    main()
