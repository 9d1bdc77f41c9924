"""The page's edge (issue 20): logins that say nothing about who exists and slow down guessing,
cancel/reset behind the login, refused file paths and uploads, and inputs that used to raise."""
import json
import os
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import torch

import page.access
from editor.history import History
from engine import TextCodec
from page.access import Logins, Throttle, TooManyLogins, add_user
from page.demo import build_demo, launch
from page.dial import dial_values
from tests.page.helpers import QUALITY, editor_value
from tests.tiny import ScriptedModel, byte_bpe_tokenizer

TEXT = "The quick brown fox jumps over the lazy dog."
FAST_HASH = 1_000


@pytest.fixture
def users(tmp_path):
    path = tmp_path / "users"
    add_user(path, "ann", "ann-password", iterations=FAST_HASH)
    return path


def test_an_unknown_user_costs_the_same_hashing_as_a_known_one(users, monkeypatch):
    hashed = []
    real = page.access.check_password
    monkeypatch.setattr(page.access, "check_password", lambda pw, stored: hashed.append(stored) or real(pw, stored))
    logins = Logins(users)
    assert not logins("ann", "wrong-password") and not logins("nobody", "wrong-password")
    assert len(hashed) == 2 and hashed[1].startswith(f"pbkdf2_sha256${FAST_HASH}$")  # a dummy, at ann's cost


class Clock:
    now = 1000.0

    def __call__(self):
        return self.now


def test_failed_logins_wait_longer_each_time_per_user_and_per_address(users):
    clock = Clock()
    logins = Logins(users, Throttle(free=3, clock=clock))
    for _ in range(3):
        assert not logins("ann", "wrong", "10.0.0.1")
    with pytest.raises(TooManyLogins, match="try again in 1 s"):
        logins("ann", "ann-password", "10.0.0.2")  # the right password waits too: guessing is not rewarded
    clock.now += 1
    assert not logins("ann", "wrong", "10.0.0.2")
    with pytest.raises(TooManyLogins, match="try again in 2 s"):
        logins("ann", "wrong", "10.0.0.2")
    clock.now += 2
    assert logins("ann", "ann-password", "10.0.0.3")  # a success clears the name's count
    assert not logins("ann", "wrong", "10.0.0.3")
    for name in (f"guess{i}" for i in range(16)):  # many names from one address: the address waits
        try:
            logins(name, "wrong", "10.0.0.9")
        except TooManyLogins:
            break
    else:
        pytest.fail("one address tried 16 names without a wait")


@pytest.fixture(scope="module")
def page_url(tmp_path_factory):
    users = tmp_path_factory.mktemp("users") / "users"
    add_user(users, "ann", "ann-password", iterations=FAST_HASH)
    codec = TextCodec.from_tokenizer(byte_bpe_tokenizer(bos=True))
    model = ScriptedModel(codec, torch.randint(10, 300, (512,), generator=torch.Generator().manual_seed(0)),
                          torch.linspace(0.3, 0.9, 512))
    demo = build_demo(model, History("sqlite://"))
    launch(demo, prevent_thread_lock=True, server_port=None, quiet=True, auth=Logins(users))
    yield demo.local_url, users
    demo.close()


@contextmanager
def logged_in(url, name="ann"):
    with httpx.Client(base_url=url, timeout=30) as client:
        assert client.post("/login", data={"username": name, "password": f"{name}-password"}).status_code == 200
        yield client


def test_cancel_and_reset_need_a_login(page_url):
    url, _ = page_url
    body = {"session_hash": "s", "fn_index": 0, "event_id": "e"}
    for route in ("/gradio_api/cancel", "/gradio_api/reset"):
        assert httpx.post(url + route.lstrip("/"), json=body).status_code == 401, route
    with logged_in(url) as client:
        assert client.post("/gradio_api/cancel", json=body).status_code == 200


def test_a_throttled_login_is_429_with_its_wait(page_url):
    url, _ = page_url
    answers = [httpx.post(url + "login", data={"username": "zed", "password": "nope"}).status_code for _ in range(7)]
    assert answers[:5] == [400] * 5 and answers[5] == 429


@pytest.mark.parametrize("path", ["/etc/passwd", "..%2F..%2F..%2Fetc%2Fpasswd", "users"])
def test_file_paths_outside_the_page_are_refused_cleanly(page_url, path, caplog):
    url, users = page_url
    with logged_in(url) as client:
        answer = client.get(f"/gradio_api/file={path if path != 'users' else users}")
    assert answer.status_code in (403, 404) and "root:" not in answer.text and "pbkdf2" not in answer.text
    assert "Traceback" not in caplog.text


def test_an_upload_past_the_document_limit_is_refused_before_it_is_stored(page_url, tmp_path):
    import gradio.utils
    url, _ = page_url
    stored = Path(gradio.utils.get_upload_folder())
    before = sum(f.stat().st_size for f in stored.rglob("*") if f.is_file()) if os.path.isdir(stored) else 0
    with logged_in(url) as client:
        answer = client.post("/gradio_api/upload", files={"files": ("big.txt", b"a" * (2 << 20), "text/plain")})
    assert answer.status_code == 413
    after = sum(f.stat().st_size for f in stored.rglob("*") if f.is_file()) if os.path.isdir(stored) else 0
    assert after - before < 2 << 20  # not the 2 MiB upload


def call(url, client, api, data):
    posted = client.post(f"/gradio_api/call/{api}", content=json.dumps({"data": list(data)}),
                         headers={"content-type": "application/json"})
    return client.get(f"/gradio_api/call/{api}/{posted.json()['event_id']}").text


@pytest.mark.parametrize("what", ["abc", None, "selection"])
def test_a_dial_of_text_or_none_and_a_one_element_selection_are_messages(page_url, what):
    url, _ = page_url
    dial = dial_values(QUALITY)
    document = editor_value(TEXT, 4, 9)
    if what == "selection":
        document["selection"] = [4]
    else:
        dial[0] = what  # steps, a slider
    with logged_in(url) as client:
        answer = call(url, client, "regenerate_selection", (document, "text", "keep", 8, "", "", "", False, *dial))
    assert "event: error" in answer and '"error": null' not in answer
    assert ("must be a number" if what != "selection" else "expected [anchor, head]") in answer
