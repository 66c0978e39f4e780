"""The printable A4 sign (G-NOT-2): cameras operate, face identification is used, who runs
them, a contact, and a QR code to the notice page with the details.

Made with fpdf2 (the PDF, with a Japanese font embedded as a subset) and segno
(the QR code). The font is Debian's Noto Sans CJK (`fonts-noto-cjk`, installed
by `make system-deps`), looked up at run time; without it the sign is refused
with one line saying what to install, rather than printed with empty boxes.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Final

import segno
from fpdf import FPDF
from fpdf.enums import WrapMode, XPos, YPos

from kernel.errors import RegistryError
from registry.notice.content import ACCREDITED_BODY_CONTACT, ACCREDITED_BODY_JA, NoticeContent

FONT_ENV: Final = "MAMORU_CJK_FONT"  # a .ttc/.otf/.ttf with Japanese glyphs, if not Debian's
FONT_CANDIDATES: Final = (
    Path("/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc"),
    Path("/usr/share/fonts/opentype/noto/NotoSansCJKjp-Regular.otf"),
    Path("/usr/share/fonts/truetype/noto/NotoSansCJK-Regular.ttc"),
)
FONT_GLOBS: Final = ("NotoSansCJK*-Regular.tt[cf]", "NotoSansCJK*-Regular.otf")
FONT_ROOTS: Final = (Path("/usr/share/fonts"), Path("/usr/local/share/fonts"))


class SignError(RegistryError):
    """The sign cannot be made here (no Japanese font, no notice URL)."""


def find_cjk_font(candidates: Sequence[Path] = FONT_CANDIDATES,
                  roots: Sequence[Path] = FONT_ROOTS) -> Path:
    """A Japanese font file to embed; SignError naming the Debian package if there is none."""
    chosen = os.environ.get(FONT_ENV)
    if chosen:
        if not Path(chosen).is_file():
            raise SignError(f"{FONT_ENV} points to {chosen}, which does not exist")
        return Path(chosen)
    for path in candidates:
        if path.is_file():
            return path
    for root in roots:
        for pattern in FONT_GLOBS:
            found = sorted(root.rglob(pattern)) if root.is_dir() else []
            if found:
                return found[0]
    raise SignError("no Japanese font for the sign: install Debian's fonts-noto-cjk "
                    f"(`make system-deps`) or point {FONT_ENV} at a .ttc/.otf with Japanese "
                    "glyphs")


def qr_png(url: str) -> bytes:
    """The QR code of `url` as a PNG (error correction M, quiet zone of 4 modules)."""
    buffer = io.BytesIO()
    segno.make(url, error="m", micro=False).save(buffer, kind="png", scale=12, border=4)
    return buffer.getvalue()


class _Sign(FPDF):
    def para(self, text: str, size: float, *, bold_gap: float = 0.0, align: str = "L") -> None:
        self.set_font("cjk", size=size)
        # Japanese breaks between any two characters; English only between words.
        wrap = WrapMode.WORD if text.isascii() else WrapMode.CHAR
        self.multi_cell(0, size * 0.5, text, align=align, wrapmode=wrap,
                        new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        if bold_gap:
            self.ln(bold_gap)


def render_sign(content: NoticeContent, url: str, *, font: Path | None = None) -> bytes:
    """The A4 sign as PDF bytes; the QR code decodes to `url`."""
    font_path = font or find_cjk_font()
    op = content.operator
    pdf = _Sign(orientation="P", unit="mm", format="A4")
    pdf.set_margins(18, 16, 18)
    pdf.set_auto_page_break(False)
    pdf.add_page()
    try:
        pdf.add_font("cjk", "", str(font_path))
    except Exception as exc:  # fpdf2 raises several types for an unreadable font
        raise SignError(f"the font {font_path} cannot be embedded: {exc}") from None
    pdf.set_title("防犯カメラ作動中 / Security cameras in operation")
    pdf.set_fill_color(16, 42, 67)
    pdf.set_text_color(255, 255, 255)
    pdf.set_font("cjk", size=34)
    pdf.cell(0, 20, "防犯カメラ作動中", align="C", fill=True, new_x=XPos.LMARGIN,
             new_y=YPos.NEXT)
    pdf.set_font("cjk", size=15)
    pdf.cell(0, 9, "Security cameras in operation", align="C", fill=True,
             new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.set_text_color(0, 0, 0)
    pdf.ln(5)
    pdf.para("当店では顔識別機能を使用しています", 22, align="C")
    pdf.para("Face identification is in use in this store", 13, bold_gap=4, align="C")
    areas = "、".join(op.face_identification_areas)
    pdf.para("過去に万引き等の犯罪または迷惑行為を行ったことが確実な者の情報を登録し、来店者の"
             "カメラ画像と照合して、その来店を確認・警戒し犯罪を防止するために利用します。"
             f"（使用場所：{areas}）", 12)
    pdf.para("To prevent crime, camera images of visitors are matched against persons who "
             "have certainly committed shoplifting or other crimes.", 9.5, bold_gap=3)
    pdf.para("一致しない方の顔データは直ちに破棄します。"
             f"録画映像は {op.recorder_retention_days} 日で消去、"
             f"登録は最後の事案から {content.retention_years} 年で消去します。", 11)
    pdf.para(f"Faces of others are discarded at once. Footage is erased after "
             f"{op.recorder_retention_days} days; registrations {content.retention_years} years "
             "after the latest incident.", 9.5, bold_gap=3)
    if content.joint_use is not None:
        pdf.para(f"顔識別データ等を「{content.joint_use.name}」の加盟店と共同利用しています"
                 "（詳細は下記のページ）。", 11)
        pdf.para("Data is used jointly with the members of a published scheme (see the page "
                 "below).", 9.5, bold_gap=3)
    else:
        pdf.para("顔識別データは当店の内部でのみ利用し、共同利用は行っていません。", 11)
        pdf.para("Face data is used inside this business only.", 9.5, bold_gap=3)
    pdf.para(f"運営者 / Operator：{op.operator_name}　{op.operator_contact}", 12)
    pdf.para(f"開示等の請求 / Requests：{op.request_contact}", 10)
    pdf.para(f"苦情・お問い合わせ / Complaints：{op.complaint_contact}", 10)
    pdf.para(f"認定個人情報保護団体 / Accredited body：{ACCREDITED_BODY_JA}　"
             f"{ACCREDITED_BODY_CONTACT}", 10, bold_gap=3)
    size = 62.0
    top = max(pdf.get_y(), 297 - 16 - size - 14)
    if top + size + 14 > 297:
        raise SignError("the configured texts are too long for one A4 sign; shorten them")
    pdf.image(io.BytesIO(qr_png(url)), x=(210 - size) / 2, y=top, w=size, h=size)
    pdf.set_xy(18, top + size + 1)
    pdf.para("詳しくはこちら / Details:", 10, align="C")
    pdf.para(url, 10, align="C")
    return bytes(pdf.output())
