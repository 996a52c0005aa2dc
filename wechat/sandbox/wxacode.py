"""Mini-program code images: a plain QR code that carries what the real code would open."""
from __future__ import annotations

import io
from urllib.parse import urlencode

import qrcode
from PIL import Image

WXACODE_URL = "https://sandbox.weixin.qq.com/wxacode"
AUTO_LINE_COLOR = (7, 193, 96)  # WeChat green, for auto_color
QUIET_ZONE = 4


def wxacode_text(appid: str, page: str, scene: str, env_version: str) -> str:
    """The URL encoded in the image; tests decode it to check what was asked for."""
    query = urlencode({"appid": appid, "page": page, "scene": scene, "env_version": env_version})
    return f"{WXACODE_URL}?{query}"


def render_png(text: str, width: int, line_color: tuple[int, int, int], hyaline: bool) -> bytes:
    """A ``width`` x ``width`` PNG of ``text`` as a QR code, centred, integer module size."""
    qr = qrcode.QRCode(error_correction=qrcode.constants.ERROR_CORRECT_M, border=QUIET_ZONE)
    qr.add_data(text)
    qr.make(fit=True)
    matrix = qr.get_matrix()
    modules = len(matrix)
    scale = max(1, width // modules)

    mask = Image.new("L", (modules, modules))
    mask.putdata([255 if dark else 0 for row in matrix for dark in row])
    mask = mask.resize((modules * scale, modules * scale), Image.Resampling.NEAREST)

    background = (255, 255, 255, 0) if hyaline else (255, 255, 255, 255)
    image = Image.new("RGBA", (width, width), background)
    offset = (width - modules * scale) // 2
    image.paste((*line_color, 255), (offset, offset, offset + mask.width, offset + mask.height), mask)
    if not hyaline:
        image = image.convert("RGB")
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()
