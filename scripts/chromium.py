"""Headless Chromium for scripts/render_html.py and the tests: screenshots, the rendered DOM, a blank-page check.

Every run gets a fresh profile and no network: host resolution fails for every name, so a page that renders here
renders offline, and a stray CDN link cannot slow a test down. Only file:// pages are loaded.
"""

from __future__ import annotations

import os
import shutil
import signal
import struct
import subprocess
import tempfile
import zlib
from pathlib import Path

import numpy as np

__all__ = ["ChromiumError", "dom_text", "find_chromium", "nonwhite_fraction", "read_png", "render_to_png"]

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
TIMEOUT_S = 90
FLAGS = (
    "--headless",
    "--no-sandbox",  # containers run as root, where Chromium's sandbox refuses to start
    "--disable-gpu",
    "--disable-quic",
    "--disable-dev-shm-usage",  # Docker's 64 MB /dev/shm crashes renderers on tall pages
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--host-resolver-rules=MAP * ~NOTFOUND",
    "--hide-scrollbars",
)


class ChromiumError(RuntimeError):
    """Chromium is missing, failed, or timed out."""


def find_chromium() -> str | None:
    """The Chromium executable: $CHROMIUM if set, else the first of CANDIDATES on PATH."""
    override = os.environ.get("CHROMIUM")
    if override:
        return shutil.which(override)
    return next((path for path in map(shutil.which, CANDIDATES) if path), None)


def _run(args: list[str], timeout: float) -> bytes:
    """Run Chromium headless with a throwaway profile and return its stdout."""
    exe = find_chromium()
    if exe is None:
        raise ChromiumError("Chromium not found: apt-get install -y chromium (or set CHROMIUM=/path/to/chrome)")
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        # Own process group: on timeout we kill the renderer/GPU helpers too, not just the browser process.
        proc = subprocess.Popen(
            [exe, *FLAGS, f"--user-data-dir={profile}", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            raise ChromiumError(f"Chromium timed out after {timeout:.0f}s: {' '.join(args)}") from None
    if proc.returncode != 0:
        tail = err.decode(errors="replace")[-2000:]
        raise ChromiumError(f"Chromium exited with {proc.returncode}: {' '.join(args)}\n{tail}")
    return out


def render_to_png(
    html_path: Path, png_path: Path, width: int = 1280, height: int = 2000, timeout: float = TIMEOUT_S
) -> None:
    """Screenshot `html_path` at a `width` x `height` viewport into `png_path`."""
    png_path = Path(png_path).resolve()
    png_path.unlink(missing_ok=True)  # a stale file must not pass for a fresh screenshot
    _run([f"--window-size={width},{height}", f"--screenshot={png_path}", Path(html_path).resolve().as_uri()], timeout)
    if not png_path.is_file():
        raise ChromiumError(f"Chromium reported success but wrote no screenshot to {png_path}")


def dom_text(html_path: Path, timeout: float = TIMEOUT_S) -> str:
    """The DOM as serialized by Chromium after parsing, scripts and the load event (--dump-dom)."""
    return _run(["--dump-dom", Path(html_path).resolve().as_uri()], timeout).decode("utf-8")


# --------------------------------------------------------------------------------------------------------------
# PNG decoding: Pillow is not a dependency, and Chromium writes only 8-bit RGB(A), non-interlaced.
# --------------------------------------------------------------------------------------------------------------

_CHANNELS = {2: 3, 6: 4}  # PNG colour type -> channels (truecolour, truecolour + alpha)


def read_png(path: Path) -> np.ndarray:
    """Pixels of an 8-bit RGB/RGBA PNG as a (height, width, channels) uint8 array."""
    data = Path(path).read_bytes()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError(f"{path} is not a PNG file")
    pos, header, idat = 8, None, []
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat.append(body)
        elif kind == b"IEND":
            break
    if header is None:
        raise ValueError(f"{path}: PNG without IHDR")
    width, height, depth, color, _, _, interlace = header
    if depth != 8 or color not in _CHANNELS or interlace:
        raise ValueError(f"{path}: only 8-bit non-interlaced RGB/RGBA is supported (depth {depth}, type {color})")
    channels = _CHANNELS[color]
    raw = np.frombuffer(zlib.decompress(b"".join(idat)), dtype=np.uint8).reshape(height, width * channels + 1)
    return _unfilter(raw, channels).reshape(height, width, channels)


def _unfilter(raw: np.ndarray, bpp: int) -> np.ndarray:
    """Undo PNG's per-row filters (RFC 2083 6.3). uint8 arithmetic wraps mod 256, as the filters require."""
    rows = np.empty((raw.shape[0], raw.shape[1] - 1), dtype=np.uint8)
    prior = np.zeros(rows.shape[1], dtype=np.uint8)
    for y, (kind, line) in enumerate(zip(raw[:, 0], raw[:, 1:], strict=True)):
        if kind == 0:
            out = line
        elif kind == 1:  # Sub: running sum per channel along the row
            out = np.cumsum(line.reshape(-1, bpp), axis=0, dtype=np.uint8).ravel()
        elif kind == 2:  # Up
            out = line + prior
        elif kind in (3, 4):  # Average, Paeth: each byte depends on its left neighbour, so no vectorizing
            out = np.frombuffer(_unfilter_sequential(kind, line.tobytes(), prior.tobytes(), bpp), dtype=np.uint8)
        else:
            raise ValueError(f"invalid PNG filter type {kind} in row {y}")
        rows[y] = prior = out
    return rows


def _unfilter_sequential(kind: int, line: bytes, prior: bytes, bpp: int) -> bytearray:
    out = bytearray(line)
    for i in range(len(out)):
        a = out[i - bpp] if i >= bpp else 0
        b = prior[i]
        if kind == 3:
            out[i] = (out[i] + (a + b) // 2) & 0xFF
            continue
        c = prior[i - bpp] if i >= bpp else 0
        p = a + b - c
        pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
        out[i] = (out[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 0xFF
    return out


def nonwhite_fraction(png_path: Path, threshold: int = 250) -> float:
    """Share of pixels with any RGB channel below `threshold`: near 0 means a blank page."""
    pixels = read_png(png_path)[..., :3]
    return float((pixels.min(axis=2) < threshold).mean())
