"""The pages over HTTP (TestClient): login, submit, my predictions, review, and what they refuse."""

from __future__ import annotations

import re
from html import unescape

import pytest
from fastapi.testclient import TestClient

from prodtype.catalog import load_catalog
from prodtype.serving.users import BAD_CREDENTIALS
from prodtype.web.render import TEMPLATES_DIR
from prodtype.web.session import NONCE_COOKIE, SESSION_COOKIE
from service_support.databases import SqliteBackend
from service_support.images import corrupt_jpeg, not_an_image, photo

from .conftest import assert_security_headers, csrf_of, error_on, log_in, submit

CATALOG = load_catalog()
HOSTILE = '<script>alert("x")</script><img src=x onerror="alert(1)"> Piscine tubulaire ronde'


@pytest.fixture
def backend(sqlite_backend: SqliteBackend) -> SqliteBackend:
    """SQLite only: these tests are about the pages; the review queue runs on both databases
    (test_review_page.py), and the services under the pages are tested on both in tests/api."""
    return sqlite_backend


def test_pages_send_strangers_to_the_login_page(client: TestClient) -> None:
    for path in ("/", "/predict", "/predictions", "/predictions/1", "/review"):
        response = client.get(path)
        assert (response.status_code, response.headers["location"]) == (303, "/login"), path
    assert client.get("/predictions/1/image").status_code == 401


def test_login_sets_an_httponly_strict_cookie_and_logout_removes_it(client: TestClient) -> None:
    page = client.get("/login")
    assert page.status_code == 200 and 'name="password"' in page.text
    assert "HttpOnly" in page.headers["set-cookie"] and "SameSite=strict" in page.headers["set-cookie"]
    response = client.post(
        "/login",
        data={"username": "carl", "password": "correct horse battery staple", "csrf_token": csrf_of(page)},
    )
    assert (response.status_code, response.headers["location"]) == (303, "/")
    cookie = response.headers["set-cookie"]
    assert cookie.startswith(f"{SESSION_COOKIE}=") and "HttpOnly" in cookie and "SameSite=strict" in cookie
    assert client.get("/").headers["location"] == "/predict"  # a customer starts at the form
    logout = client.post("/logout", data={"csrf_token": csrf_of(client.get("/predict"))})
    assert (logout.status_code, logout.headers["location"]) == (303, "/login")
    assert client.get("/predict").headers["location"] == "/login"


@pytest.mark.parametrize(
    ("username", "password", "status", "message"),
    [
        ("carl", "wrong password", 401, BAD_CREDENTIALS),
        ("nobody", "wrong password", 401, BAD_CREDENTIALS),
        ("carl", "", 422, "enter your username and your password"),
    ],
)
def test_login_failures_are_explained(
    client: TestClient, username: str, password: str, status: int, message: str
) -> None:
    token = csrf_of(client.get("/login"))
    response = client.post("/login", data={"username": username, "password": password, "csrf_token": token})
    assert response.status_code == status
    assert error_on(response.text) == message
    assert f'value="{username}"' in response.text  # the name is kept, the password is not
    assert SESSION_COOKIE not in response.headers.get("set-cookie", "")


def test_form_posts_without_the_pages_token_are_refused(client: TestClient) -> None:
    # No token, a made-up one, and one from another browser (another nonce): all refused, nothing done.
    response = client.post("/login", data={"username": "carl", "password": "correct horse battery staple"})
    assert response.status_code == 403 and "reload the page" in error_on(response.text)
    log_in(client, "carl")
    for token in ("", "0" * 64):
        status, page = submit(client, "Piscine tubulaire", csrf_token=token)
        assert status == 403 and "did not come from this site" in error_on(page)
    foreign = csrf_of(TestClient(client.app).get("/login"))  # another browser's page
    status, page = submit(client, "Piscine tubulaire", csrf_token=foreign)
    assert status == 403
    assert client.get("/predictions").text.count('class="designation"') == 0
    # Without the nonce cookie, the page says what to do.
    client.cookies.delete(NONCE_COOKIE)
    response = client.post("/predict", data={"designation": "x", "csrf_token": "0" * 64})
    assert response.status_code == 403 and "allow cookies" in error_on(response.text)


def test_submitting_shows_the_type_confidence_and_top_5_names(client: TestClient) -> None:
    log_in(client, "carl")
    status, location = submit(client, "Piscine tubulaire ronde 3,05 x 0,76 m", "Avec pompe", photo(0))
    assert status == 303 and re.fullmatch(r"/predictions/\d+", location)
    page = client.get(location)
    assert page.status_code == 200
    category = unescape(re.search(r'id="predicted-category">(.*?) <span', page.text).group(1))  # type: ignore[union-attr]
    assert category in {c.name for c in CATALOG.categories}
    assert re.search(r'id="confidence">\d+\.\d %<', page.text)
    rows = re.findall(r"<td>\d</td>\s*<td>(.*?)</td>\s*<td class=\"code\">(\d+)</td>", page.text)
    assert len(rows) == 5
    assert all(unescape(name) == CATALOG.name(int(code)) for name, code in rows)
    assert unescape(rows[0][0]) == category
    assert f'src="{location}/image"' in page.text
    image = client.get(f"{location}/image")
    assert image.status_code == 200 and image.content == photo(0)
    assert image.headers["content-type"] == "image/jpeg"


@pytest.mark.parametrize(
    ("designation", "image", "status", "message"),
    [
        ("", None, 422, "designation is required"),
        ("   ", None, 422, "designation is required"),
        ("x" * 1001, None, 422, "designation is 1001 characters long; at most 1000"),
        ("Verre\x00 à vin", None, 422, "designation contains a NUL character"),
        ("Mug", not_an_image(), 422, "the uploaded file is not an image"),
        ("Mug", corrupt_jpeg(), 422, "the image"),
    ],
    ids=["empty", "blank", "too-long", "nul", "not-an-image", "corrupt"],
)
def test_bad_input_is_explained_on_the_form(
    client: TestClient, designation: str, image: bytes | None, status: int, message: str
) -> None:
    log_in(client, "carl")
    got, page = submit(client, designation, "<b>kept</b>", image)
    assert got == status, page
    assert error_on(page).startswith(message), error_on(page)
    assert "&lt;b&gt;kept&lt;/b&gt;</textarea>" in page  # what was typed comes back, escaped
    assert client.get("/predictions").text.count('class="designation"') == 0


def test_an_image_part_of_another_type_is_refused_with_what_to_send(client: TestClient) -> None:
    log_in(client, "carl")
    token = csrf_of(client.get("/predict"))
    response = client.post(
        "/predict",
        data={"designation": "Mug", "csrf_token": token},
        files={"image": ("prices.csv", b"a,b\n1,2\n", "text/csv")},
    )
    assert response.status_code == 415
    assert "send a JPEG, PNG or WebP file" in error_on(response.text)


def test_user_html_is_shown_as_text_everywhere(client: TestClient) -> None:
    log_in(client, "carl")
    status, location = submit(client, HOSTILE, '<a href="javascript:alert(2)">click</a>', photo(1))
    assert status == 303
    log_in(client, "rita")
    pages = {path: client.get(path).text for path in (location, "/review")}
    log_in(client, "carl")
    pages["/predictions"] = client.get("/predictions").text
    for path, page in pages.items():
        assert (
            "<script>alert" not in page and "<img src=x" not in page and '<a href="javascript' not in page
        ), path
        assert (
            "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;&lt;img src=x onerror=&#34;alert(1)&#34;&gt;"
            in page
        )
    assert "&lt;a href=&#34;javascript:alert(2)&#34;&gt;click&lt;/a&gt;" in pages[location]


def test_templates_never_turn_escaping_off() -> None:
    for template in TEMPLATES_DIR.glob("*.html"):
        text = template.read_text()
        for marker in ("|safe", "| safe", "autoescape false", "Markup"):
            assert marker not in text, f"{template.name} uses {marker}"


def test_pages_carry_a_content_security_policy(client: TestClient) -> None:
    """Every kind of answer a browser renders: pages, redirects, error pages, the photo; for a stranger,
    a customer and a reviewer. (test_page_roles.py checks the same on every page for every role.)"""
    checked = [client.get(path) for path in ("/login", "/", "/predict", "/review")]  # a stranger
    log_in(client, "carl")
    location = submit(client, "Piscine tubulaire ronde", image=photo(0))[1]
    checked += [
        client.get(path) for path in ("/", "/predict", "/predictions", location, "/predictions/424242")
    ]
    checked += [client.get("/review"), client.get(f"{location}/image")]
    token = csrf_of(client.get("/predict"))
    checked += [
        client.post("/predict", data={"designation": "", "csrf_token": token})
    ]  # the form, with an error
    log_in(client, "rita")
    checked += [client.get("/review"), client.post("/logout", data={"csrf_token": "0" * 64})]
    statuses = sorted({r.status_code for r in checked})
    assert statuses == [200, 303, 403, 404, 422], statuses  # each kind of answer was seen
    for response in checked:
        assert_security_headers(response, (response.request.method, response.request.url.path))


def test_my_predictions_lists_only_mine_newest_first(client: TestClient) -> None:
    log_in(client, "cora")
    assert submit(client, "Jeu PS4 FIFA 21")[0] == 303
    log_in(client, "carl")
    first = submit(client, "Piscine tubulaire ronde")[1]
    second = submit(client, "Lot de 3 romans policiers")[1]
    page = client.get("/predictions").text
    listed = re.findall(r'<a href="(/predictions/\d+)" class="designation">(.*?)</a>', page)
    assert listed == [(second, "Lot de 3 romans policiers"), (first, "Piscine tubulaire ronde")]
    cora_id = int(first.rsplit("/", 1)[1]) - 1
    assert client.get(f"/predictions/{cora_id}").status_code == 404  # someone else's: not found
    assert client.get(f"/predictions/{cora_id}/image").status_code == 404


def test_customers_cannot_open_the_review_queue(client: TestClient) -> None:
    log_in(client, "carl")
    response = client.get("/review")
    assert response.status_code == 403
    assert (
        error_on(response.text) == "This page is for admin / reviewer; you are logged in as carl (customer)"
    )
    assert 'href="/review"' not in response.text
    posted = client.post("/review/1", data={"action": "reject", "csrf_token": csrf_of(response)})
    assert posted.status_code == 403
