"""The creditor's logo: checked and re-encoded on upload, managed on the Ente's settings page, printed once per PDF
in the notice header (top right, in the guide's 30×30 mm box)."""

import io
import logging
import os
import struct
import zlib
from datetime import date

import pytest
from PIL import Image, ImageChops
from werkzeug.datastructures import FileStorage
from werkzeug.test import encode_multipart

from portal.extensions import db
from portal.ledger.errors import ValidationFailed
from portal.ledger.models import Creditor
from portal.notices import NoticeDocument, logo, render_notice
from portal.notices.layout import LOGO, MARGIN, PAGE_W
from portal.notices.logo import LogoError, pdf_image, prepare_logo
from portal.settings import services as settings_svc
from tests.test_notices import decode_pages, expected_qr, poppler

RED = (220, 0, 0)


def encode(image: Image.Image, fmt: str = "PNG", **options) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **options)
    return out.getvalue()


def solid(size=(300, 200), colour=RED, mode="RGB", fmt="PNG") -> bytes:
    return encode(Image.new(mode, size, colour), fmt)


def noise(size=(200, 200)) -> bytes:
    """A PNG that does not compress: its size shows how many times a PDF embeds it."""
    return encode(Image.frombytes("RGB", size, os.urandom(size[0] * size[1] * 3)))


def opened(png: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(png))
    image.load()
    return image


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width`` × ``height`` pixels, with almost no data: a decompression bomb's shape."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 1000))
            + chunk(b"IEND", b""))


# --- prepare_logo -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_png_and_jpeg_are_re_encoded_as_png(fmt):
    png = prepare_logo(solid(fmt=fmt))
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    image = opened(png)
    assert (image.format, image.size, image.mode) == ("PNG", (300, 200), "RGB")
    assert is_red(image.getpixel((150, 100)))


def test_large_image_is_scaled_down_keeping_its_shape():
    assert opened(prepare_logo(solid((2000, 1000), fmt="JPEG"))).size == (600, 300)
    assert opened(prepare_logo(solid((900, 1800)))).size == (300, 600)
    assert opened(prepare_logo(solid((120, 80)))).size == (120, 80)  # never enlarged


def test_transparency_is_kept_and_an_opaque_alpha_dropped():
    image = Image.new("RGBA", (200, 100), (0, 0, 255, 0))
    image.paste((0, 0, 255, 255), (50, 25, 150, 75))
    kept = opened(prepare_logo(encode(image)))
    assert kept.mode == "RGBA"
    assert kept.getpixel((5, 5))[3] == 0
    assert kept.getpixel((100, 50)) == (0, 0, 255, 255)
    assert opened(prepare_logo(solid(mode="RGBA", colour=(*RED, 255)))).mode == "RGB"
    palette = Image.new("RGBA", (100, 100), (0, 0, 0, 0)).convert("P")
    assert opened(prepare_logo(encode(palette))).mode == "RGBA"


def test_metadata_is_dropped_and_a_rotated_photo_is_turned_upright():
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", "segreto")
    png = prepare_logo(encode(Image.new("RGB", (100, 100), RED), pnginfo=info))
    assert b"segreto" not in png
    assert b"tEXt" not in png
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotated 90° clockwise
    photo = encode(Image.new("RGB", (160, 100), RED), "JPEG", exif=exif)
    assert opened(prepare_logo(photo)).size == (100, 160)


@pytest.mark.parametrize(("data", "message"), [
    (b"", "Scegliere il file del logo."),
    (b"Questo non e' un logo, e' un file di testo.\n" * 10, "Il logo deve essere un'immagine PNG o JPEG."),
    (solid(fmt="GIF"), "Il logo deve essere un'immagine PNG o JPEG."),
    (solid(fmt="BMP"), "Il logo deve essere un'immagine PNG o JPEG."),
    (b"<svg xmlns='http://www.w3.org/2000/svg'/>", "Il logo deve essere un'immagine PNG o JPEG."),
    (solid((49, 300)), "il lato corto deve essere di almeno 50 pixel"),
    (solid((300, 40)), "il lato corto deve essere di almeno 50 pixel"),
    (solid((610, 100)), "al massimo 6 volte quello corto"),
    (solid((60, 400)), "al massimo 6 volte quello corto"),
    (solid()[:200], "danneggiato o incompleto"),
])
def test_unacceptable_uploads_are_refused(data, message):
    with pytest.raises(LogoError, match=message.replace("(", r"\(").replace(")", r"\)")):
        prepare_logo(data)


def test_over_one_mebibyte_is_refused_before_decoding():
    big = noise((700, 700))
    assert len(big) > logo.MAX_BYTES
    with pytest.raises(LogoError, match="Il file del logo supera 1 MB."):
        prepare_logo(big)


def test_decompression_bombs_are_refused():
    # Pillow's own limit (Image.MAX_IMAGE_PIXELS, untouched): refused when the header is read.
    with pytest.raises(LogoError, match="troppi pixel"):
        prepare_logo(png_header_only(100_000, 100_000))
    # Below Pillow's limit but above ours: refused before a single pixel is decoded.
    with pytest.raises(LogoError, match="troppi pixel"):
        prepare_logo(png_header_only(6000, 5000))
    real = encode(Image.new("1", (6000, 5000)))
    assert len(real) < logo.MAX_BYTES
    with pytest.raises(LogoError, match="troppi pixel"):
        prepare_logo(real)
    # Pillow's process-wide guard stays on (and above ours, so ours speaks first with its own message).
    assert Image.MAX_IMAGE_PIXELS is not None
    assert Image.MAX_IMAGE_PIXELS > logo.MAX_PIXELS


def test_logo_error_is_a_value_error():
    assert issubclass(LogoError, ValueError)


def test_pdf_image_is_sized_for_300_dpi_and_has_a_mask_only_when_transparent():
    image = pdf_image(prepare_logo(solid((2000, 1000))))
    assert (image.width, image.height, image.colours, image.alpha) == (354, 177, 3, None)
    # The stream is the PNG's own deflate data with predictors: one filter byte per row.
    assert len(zlib.decompress(image.data)) == 177 * (1 + 354 * 3)
    grey = pdf_image(prepare_logo(solid((100, 100), colour=128, mode="L")))
    assert (grey.colours, grey.colour_space) == (1, "DeviceGray")
    clear = Image.new("RGBA", (100, 100), (0, 0, 0, 0))
    clear.paste((*RED, 255), (20, 20, 80, 80))
    masked = pdf_image(prepare_logo(encode(clear)))
    assert masked.alpha is not None
    assert len(zlib.decompress(masked.alpha)) == 100 * (1 + 100)


def test_pdf_image_of_unreadable_bytes_is_none():
    assert pdf_image(b"not a png at all " + os.urandom(8)) is None


# --- Domain functions ---------------------------------------------------------------------------------------------


def test_set_and_remove_logo(ctx, creditor):
    assert settings_svc.has_logo(db.session, creditor.id) is False
    assert settings_svc.remove_logo(db.session, creditor, actor="test") is False
    size = settings_svc.set_logo(db.session, creditor, solid((2000, 1000), fmt="JPEG"), actor="test")
    db.session.commit()
    stored = settings_svc.get_logo(db.session, creditor.id)
    assert len(stored) == size
    assert opened(stored).size == (600, 300)
    assert settings_svc.has_logo(db.session, creditor.id) is True
    with pytest.raises(ValidationFailed) as exc:
        settings_svc.set_logo(db.session, creditor, solid(fmt="GIF"), actor="test")
    assert exc.value.by_field() == {"logo": ["Il logo deve essere un'immagine PNG o JPEG."]}
    assert settings_svc.get_logo(db.session, creditor.id) == stored
    assert settings_svc.remove_logo(db.session, creditor, actor="test") is True
    db.session.commit()
    assert settings_svc.get_logo(db.session, creditor.id) is None


# --- Settings page ----------------------------------------------------------------------------------------------


@pytest.fixture
def admin(make_user, login):
    return login(make_user("admin", role="admin"))


@pytest.fixture
def logs(caplog, monkeypatch):
    """The settings log lines (migrations/env.py's fileConfig disables loggers imported before it)."""
    name = "portal.settings.services"
    monkeypatch.setattr(logging.getLogger(name), "disabled", False)
    caplog.set_level(logging.INFO, logger=name)
    return caplog


def upload(client, data: bytes, filename: str = "stemma.png", **kwargs):
    """POST the file as a browser would (encoded here: the test client spools big bodies to a file it never closes)."""
    boundary, body = encode_multipart({"logo": FileStorage(io.BytesIO(data), filename=filename)})
    return client.post("/officer/settings/logo", data=body, content_type=f"multipart/form-data; boundary={boundary}",
                       **kwargs)


def stored_logo(creditor_id: int) -> bytes | None:
    db.session.expire_all()
    return settings_svc.get_logo(db.session, creditor_id)


def text(response) -> str:
    return response.get_data(as_text=True)


def test_page_without_a_logo_offers_an_accessible_upload(client, admin):
    page = text(client.get("/officer/settings/creditor"))
    assert "Nessun logo caricato" in page
    assert 'enctype="multipart/form-data"' in page
    assert 'action="/officer/settings/logo"' in page
    assert '<label for="logo" class="active">File del logo</label>' in page
    assert 'type="file"' in page
    assert 'aria-describedby="logo-help"' in page
    assert 'id="logo-help"' in page
    assert 'accept="image/png,image/jpeg"' in page
    assert "/officer/settings/logo.png" not in page
    assert "/officer/settings/logo/delete" not in page


def test_admin_uploads_sees_and_removes_the_logo(client, admin, creditor, logs):
    # A JPEG under a .png name: the content decides, and it is stored as a PNG.
    response = upload(client, solid((2000, 1000), fmt="JPEG"))
    assert response.status_code == 302
    assert response.headers["Location"].endswith("/officer/settings/creditor#ente-logo")
    png = stored_logo(creditor.id)
    assert opened(png).size == (600, 300)
    assert f"logo set ({len(png)} bytes) by user:{admin.id}" in logs.text

    page = text(client.get("/officer/settings/creditor"))
    assert "Logo salvato" in page
    assert 'src="/officer/settings/logo.png"' in page
    assert 'alt="Logo attuale dell\'ente"' in page
    assert 'action="/officer/settings/logo/delete"' in page
    assert "Sostituisci il logo" in page

    image = client.get("/officer/settings/logo.png")
    assert image.status_code == 200
    assert image.mimetype == "image/png"
    assert image.data == png
    assert "private" in image.headers["Cache-Control"]
    assert "no-cache" in image.headers["Cache-Control"]
    assert image.headers["X-Content-Type-Options"] == "nosniff"
    again = client.get("/officer/settings/logo.png", headers={"If-None-Match": image.headers["ETag"]})
    assert again.status_code == 304

    response = client.post("/officer/settings/logo/delete")
    assert response.status_code == 302
    assert stored_logo(creditor.id) is None
    assert f"logo removed by user:{admin.id}" in logs.text
    assert "Logo eliminato" in text(client.get(response.headers["Location"]))
    assert client.get("/officer/settings/logo.png").status_code == 404
    response = client.post("/officer/settings/logo/delete")
    assert "Nessun logo da eliminare" in text(client.get(response.headers["Location"]))


def test_a_new_logo_replaces_the_old_one(client, admin, creditor):
    assert upload(client, solid((300, 300))).status_code == 302
    assert upload(client, solid((400, 100), colour=(0, 0, 255))).status_code == 302
    assert opened(stored_logo(creditor.id)).size == (400, 100)


@pytest.mark.parametrize(("data", "filename", "message"), [
    (solid(fmt="GIF"), "logo.png", "Il logo deve essere un&#39;immagine PNG o JPEG."),
    (b"%PDF-1.4 non un'immagine", "logo.jpg", "Il logo deve essere un&#39;immagine PNG o JPEG."),
    (solid((30, 30)), "logo.png", "il lato corto deve essere di almeno 50 pixel"),
    (png_header_only(100_000, 100_000), "bomba.png", "troppi pixel"),
    (noise((700, 700)), "grande.png", "Il file del logo supera 1 MB."),
])
def test_invalid_upload_is_refused_on_the_field(client, admin, creditor, data, filename, message):
    settings_svc.set_logo(db.session, creditor, solid(), actor="test")
    db.session.commit()
    before = stored_logo(creditor.id)
    response = upload(client, data, filename)
    assert response.status_code == 422
    page = text(response)
    assert message in page
    assert 'id="logo-error"' in page
    assert 'aria-describedby="logo-help logo-error"' in page
    assert 'aria-invalid="true"' in page
    assert "Controllare i dati inseriti" in page
    # The Ente's own form is shown with the stored data, without errors.
    assert 'value="Comune di Prova"' in page
    assert 'id="name-error" aria-live="polite"></div>' in page
    assert stored_logo(creditor.id) == before


def test_upload_without_a_file_is_refused(client, admin, creditor):
    response = client.post("/officer/settings/logo", data={})
    assert response.status_code == 422
    assert "Scegliere il file del logo." in text(response)
    response = upload(client, b"", "")
    assert response.status_code == 422
    assert stored_logo(creditor.id) is None


def test_logo_posts_without_csrf_are_refused(client, admin, creditor):
    assert upload(client, solid(), csrf=False).status_code == 400
    assert stored_logo(creditor.id) is None
    settings_svc.set_logo(db.session, creditor, solid(), actor="test")
    db.session.commit()
    assert client.post("/officer/settings/logo/delete", csrf=False).status_code == 400
    assert stored_logo(creditor.id) is not None


LOGO_ROUTES = [("POST", "/officer/settings/logo"), ("POST", "/officer/settings/logo/delete"),
               ("GET", "/officer/settings/logo.png")]


@pytest.mark.parametrize("role", ["operator", "viewer"])
@pytest.mark.parametrize(("method", "url"), LOGO_ROUTES)
def test_non_admins_are_refused(client, make_user, login, creditor, role, method, url):
    settings_svc.set_logo(db.session, creditor, solid(), actor="test")
    db.session.commit()
    before = stored_logo(creditor.id)
    login(make_user("utente", role=role))
    if url.endswith("/logo"):
        assert upload(client, solid((500, 500), colour=(0, 255, 0))).status_code == 403
    else:
        assert client.open(url, method=method).status_code == 403
    assert stored_logo(creditor.id) == before


@pytest.mark.parametrize(("method", "url"), [("GET", "/officer/settings/logo"),
                                             ("GET", "/officer/settings/logo/delete"),
                                             ("POST", "/officer/settings/logo.png")])
def test_unsupported_methods_are_refused(client, admin, method, url):
    assert client.open(url, method=method).status_code == 405


def test_anonymous_is_sent_to_login(client, creditor):
    for method, url in LOGO_ROUTES:
        response = client.open(url, method=method)
        assert response.status_code == 302
        assert "/officer/login" in response.headers["Location"]


def test_each_creditor_sees_only_its_own_logo(client, admin, creditor):

    other = settings_svc.create_creditor(
        db.session, fiscal_code="00123456782", name="Comune Altro", segregation_code="02")
    settings_svc.set_logo(db.session, other, solid(colour=(0, 0, 255)), actor="test")
    db.session.commit()
    assert client.get("/officer/settings/logo.png").status_code == 404
    client.post("/officer/settings/logo/delete")
    assert stored_logo(other.id) is not None


# --- The notice -------------------------------------------------------------------------------------------------


def raster(pdf: bytes, tmp_path, dpi: int = 72) -> Image.Image:
    """The first page in colour, one pixel per point at 72 dpi (origin top left)."""
    source = tmp_path / "logo.pdf"
    source.write_bytes(pdf)
    poppler("pdftoppm", "-png", "-r", str(dpi), "-f", "1", "-l", "1", "-singlefile", str(source),
            str(tmp_path / "first"))
    with Image.open(tmp_path / "first.png") as image:
        return image.convert("RGB")


def is_red(pixel) -> bool:
    r, g, b = pixel
    return r > 180 and g < 60 and b < 60


def red_box(image: Image.Image) -> tuple[int, int, int, int] | None:
    """The bounding box of the red pixels of ``image``."""
    r, g, b = image.split()
    mask = ImageChops.multiply(r.point(lambda v: 255 if v > 180 else 0), g.point(lambda v: 255 if v < 60 else 0))
    return ImageChops.multiply(mask, b.point(lambda v: 255 if v < 60 else 0)).getbbox()


def with_logo(creditor, png: bytes) -> None:
    creditor.logo_png = png
    db.session.commit()


def test_notice_without_a_logo_has_no_image(make_position, creditor, tmp_path):
    pdf = render_notice(make_position(amount=15000), creditor=creditor)
    assert b"/Subtype /Image" not in pdf
    page = raster(pdf, tmp_path)
    box = page.crop((int(PAGE_W - MARGIN - LOGO), int(MARGIN), int(PAGE_W - MARGIN), int(MARGIN + LOGO)))
    assert box.getextrema() == ((255, 255), (255, 255), (255, 255))


def test_logo_is_drawn_at_the_top_right_of_the_header(make_position, creditor, tmp_path):
    with_logo(creditor, prepare_logo(solid((2000, 1000))))
    position = make_position(amount=15000, due=date(2027, 1, 31))
    pdf = render_notice(position, creditor=creditor)
    assert pdf.count(b"/Subtype /Image") == 1
    page = raster(pdf, tmp_path)
    right, top = PAGE_W - MARGIN, MARGIN
    # A 2:1 logo fills the box's width and half its height, from the top right corner; the only red on the page.
    x0, y0, x1, y1 = red_box(page)
    expected = (right - LOGO, top, right, top + LOGO / 2)
    assert all(abs(got - want) <= 1.5 for got, want in zip((x0, y0, x1, y1), expected, strict=True)), (x0, y0, x1, y1)
    assert is_red(page.getpixel((int(right - LOGO / 2), int(top + LOGO / 4))))
    assert page.getpixel((int(right - LOGO / 2), int(top + LOGO * 3 / 4))) == (255, 255, 255)
    # The barcodes still read.
    assert decode_pages(pdf, tmp_path) == [("QRCode", expected_qr(position.single_option))]


def test_transparent_logo_shows_the_page_through(make_position, creditor, tmp_path):
    image = Image.new("RGBA", (400, 400), (0, 0, 0, 0))
    image.paste((*RED, 255), (100, 100, 300, 300))
    with_logo(creditor, prepare_logo(encode(image)))
    pdf = render_notice(make_position(amount=15000), creditor=creditor)
    assert pdf.count(b"/Subtype /Image") == 2  # the image and its soft mask
    page = raster(pdf, tmp_path)
    right, top = PAGE_W - MARGIN, MARGIN
    assert is_red(page.getpixel((int(right - LOGO / 2), int(top + LOGO / 2))))
    assert page.getpixel((int(right - LOGO + 3), int(top + 3))) == (255, 255, 255)  # transparent, not black


def test_many_notices_embed_the_logo_once(make_position, creditor, tmp_path):
    position = make_position(amount=15000, installments=(7500, 7500))

    def document(count: int) -> bytes:
        out = io.BytesIO()
        doc = NoticeDocument(out)
        for _ in range(count):
            doc.add(position, creditor=creditor)
        doc.close()
        return out.getvalue()

    plain_1, plain_50 = document(1), document(50)
    with_logo(creditor, prepare_logo(noise((200, 200))))
    pdf_image.cache_clear()
    logo_1, logo_50 = document(1), document(50)
    assert logo_50.count(b"/Subtype /Image") == 1
    image_size = len(pdf_image(creditor.logo_png).data)
    assert image_size > 100_000
    # The image once, plus a few bytes per page to place it.
    assert image_size <= len(logo_1) - len(plain_1) < image_size + 2_000
    assert len(logo_50) - len(plain_50) < image_size + 50 * 100
    # Decoded once for the whole process, whatever the number of documents.
    for _ in range(5):
        render_notice(position, creditor=creditor)
    info = pdf_image.cache_info()
    assert (info.misses, info.currsize) == (1, 1)
    assert decode_pages(logo_1, tmp_path, dpi=200).count(("QRCode", expected_qr(position.installments[0]))) == 1


def test_each_creditor_of_a_document_gets_its_own_logo(make_position, creditor, tmp_path):

    position = make_position(amount=15000)
    other = settings_svc.create_creditor(
        db.session, fiscal_code="00123456782", name="Comune Altro", segregation_code="02")
    with_logo(creditor, prepare_logo(solid()))
    other.logo_png = prepare_logo(solid(colour=(0, 0, 255)))
    db.session.commit()
    out = io.BytesIO()
    doc = NoticeDocument(out)
    for _ in range(3):
        doc.add(position, creditor=creditor)
        doc.add(position, creditor=other)
    doc.close()
    assert out.getvalue().count(b"/Subtype /Image") == 2


def test_unreadable_stored_logo_prints_the_notice_without_it(make_position, creditor, caplog, monkeypatch):
    with_logo(creditor, b"\x89PNG\r\n\x1a\n" + os.urandom(64))
    monkeypatch.setattr(logging.getLogger("portal.notices.logo"), "disabled", False)
    with caplog.at_level(logging.WARNING, logger="portal.notices.logo"):
        pdf = render_notice(make_position(amount=15000), creditor=creditor)
    assert b"/Subtype /Image" not in pdf
    assert "creditor logo unreadable" in caplog.text


def test_logo_is_deferred_on_the_creditor(ctx, creditor):
    db.session.expire_all()
    loaded = db.session.get(Creditor, creditor.id)
    assert "logo_png" not in loaded.__dict__
