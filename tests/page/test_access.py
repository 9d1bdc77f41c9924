"""Users, budgets and the model's queue: logins keep documents apart, big runs are refused, one user
cannot hold the model, and a page other machines can reach does not start without a login."""
import threading
import time

import pytest
import torch

from editor.history import History
from engine import TextCodec
from page.access import AccessError, InFlight, Limits, Logins, add_user, in_flight, logins_for, read_users
from page.demo import build_demo, launch
from tests.page.helpers import args as regenerate_args
from tests.tiny import ScriptedModel, byte_bpe_tokenizer

TEXT = "The quick brown fox jumps over the lazy dog."
FAST_HASH = 1_000  # iterations: the tests check the scheme, not its cost


class GatedModel(ScriptedModel):
    """Each forward waits until `gate` is open, so a test decides when a run may finish; `batches`
    records how many runs shared each of the scheduler's forwards."""

    gate, waiting = threading.Event(), threading.Event()
    batches: list[int] = []

    def logits(self, ids):
        self.waiting.set()
        assert self.gate.wait(60), "the test never opened the gate"
        return super().logits(ids)

    def forward_many(self, calls):
        self.batches.append(len(calls))
        return super().forward_many(calls)


@pytest.fixture(scope="module")
def model():
    codec = TextCodec.from_tokenizer(byte_bpe_tokenizer(bos=True))
    target = torch.randint(10, 300, (512,), generator=torch.Generator().manual_seed(0))
    model = GatedModel(codec, target, torch.linspace(0.3, 0.9, 512))
    model.gate.set()
    return model


@pytest.fixture(scope="module")
def server(model, tmp_path_factory):
    """The page with logins for ann and bob, and a budget small enough to exceed."""
    users = tmp_path_factory.mktemp("users") / "users"
    for name in ("ann", "bob"):
        add_user(users, name, f"{name}-password", iterations=FAST_HASH)
    history = History("sqlite://")
    demo = build_demo(model, history, Limits(budget=100))
    launch(demo, prevent_thread_lock=True, server_port=None, quiet=True, auth=Logins(users))
    yield demo, history
    demo.close()


def login(server, name):
    from gradio_client import Client
    return Client(server[0].local_url, auth=(name, f"{name}-password"), verbose=False)


def test_another_users_document_is_invisible_and_unopenable(server):
    ann, bob = login(server, "ann"), login(server, "bob")
    ann.predict("Ann's private notes.\n", "ann.txt", "text", api_name="/save")
    mine = server[1].as_user("ann").documents()
    assert [d.name for d in mine] == ["ann.txt"] and server[1].as_user("bob").documents() == []
    revision = mine[0].head_id
    _, _, tree, *_ = bob.predict("Bob's notes.\n", "bob.txt", "text", api_name="/save")
    assert "Bob" not in tree and tree.count('class="rev') == 1  # his own revision, not ann's
    # The revision pickers only offer a session its own revisions; History refuses the rest too.
    for api, args in (("/restore", (revision,)), ("/diff", (revision, revision)),
                      ("/label", (revision, "bob was here"))):
        with pytest.raises(Exception, match=f"no revision {revision}|not in the list of choices"):
            bob.predict(*args, api_name=api)
    assert server[1].as_user("ann").revision(revision).label is None
    assert len(server[1].as_user("ann").history(mine[0].id)) == 1  # bob's restore wrote nothing
    assert [d.name for d in server[1].as_user("bob").documents()] == ["bob.txt"]
    tree, *_ = ann.predict(revision, "mine", api_name="/label")
    assert "[mine]" in tree


def test_a_wrong_password_is_refused(server):
    from gradio_client import Client
    with pytest.raises(ValueError, match="Could not login"):
        Client(server[0].local_url, auth=("ann", "bob-password"), verbose=False)


def test_an_over_budget_request_is_refused_before_it_runs(server, model):
    ann = login(server, "ann")
    calls = model.calls
    with pytest.raises(Exception, match=r"8 candidates × \d+ tokens = [\d,]+; one request may use 100"):
        ann.predict(*regenerate_args(TEXT, 4, 15, candidates=8), api_name="/regenerate_selection")
    assert model.calls == calls  # the model never ran
    updates = list(ann.submit(*regenerate_args(TEXT, 4, 15), api_name="/regenerate_selection"))
    assert 'data-done="1"' in updates[-1][0]


def test_one_user_cannot_queue_a_second_run_and_another_users_run_shares_the_forwards(server, model):
    """One queue: bob's run does not wait behind ann's (no head of the line across users); the
    engine's scheduler admits it beside hers and they share forwards."""
    ann, ann_again, bob = login(server, "ann"), login(server, "ann"), login(server, "bob")
    model.gate.clear()
    model.waiting.clear()
    model.batches.clear()
    try:
        first = ann.submit(*regenerate_args(TEXT, 4, 15), api_name="/regenerate_selection")
        assert model.waiting.wait(30)  # ann's run holds the model
        with pytest.raises(Exception, match="already have 1 run"):
            ann_again.predict(*regenerate_args(TEXT, 4, 15), api_name="/regenerate_selection")
        second = bob.submit(*regenerate_args(TEXT, 4, 15), api_name="/regenerate_selection")
        until(lambda: any("starting" in u[1] for u in second.outputs()))
        time.sleep(0.5)  # bob's job reaches the scheduler while ann's forward is held
    finally:
        model.gate.set()
    assert 'data-done="1"' in first.result()[0] and 'data-done="1"' in second.result()[0]
    assert max(model.batches) == 2  # the two runs shared a forward
    list(ann.submit(*regenerate_args(TEXT, 4, 15), api_name="/regenerate_selection"))  # ann's count was left


def until(condition, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def steps():
    return (item for item in ["checked", "step"])


def test_a_user_at_the_cap_is_refused_and_a_stopped_run_counts_out():
    runs = InFlight(per_user=1)
    first = in_flight(runs, "ann", steps())
    assert next(first) == "checked" and runs.count("ann") == 1
    refused = in_flight(runs, "ann", steps())
    with pytest.raises(AccessError, match="already have 1 run"):
        next(refused)
    assert list(in_flight(runs, "bob", steps())) == ["checked", "step"]  # bob waits for no one
    first.close()  # Stop: the page closes the generator
    assert runs.count("ann") == 0
    assert list(in_flight(runs, "ann", steps())) == ["checked", "step"]
    assert runs.count("ann") == 0 and runs.count("bob") == 0


def test_binding_every_interface_without_users_refuses_to_start(tmp_path, monkeypatch):
    import app
    import engine

    monkeypatch.setattr(engine, "load_model", lambda *a, **k: pytest.fail("loaded the model before the check"))
    users = tmp_path / "users"
    with pytest.raises(SystemExit, match=f"asks for a login, but {users} has no users"):
        app.main(["--host", "0.0.0.0", "--users", str(users)])
    assert logins_for("127.0.0.1", users) is None and logins_for("::1", users) is None
    with pytest.raises(AccessError, match="has no users"):
        logins_for("127.0.0.1", users, "on")
    add_user(users, "ann", "ann-password", iterations=FAST_HASH)
    logins = logins_for("0.0.0.0", users)
    assert logins is not None and logins("ann", "ann-password") and not logins("ann", "wrong")
    assert not logins("bob", "ann-password")
    assert logins_for("0.0.0.0", users, "off") is None  # asked for: everyone is one user


def test_the_users_file_holds_salted_hashes_only(tmp_path):
    users = tmp_path / "users"
    add_user(users, "ann", "correct horse", iterations=FAST_HASH)
    add_user(users, "bob", "correct horse", iterations=FAST_HASH)
    text = users.read_text()
    assert "correct horse" not in text and (users.stat().st_mode & 0o077) == 0
    stored = read_users(users)
    assert stored["ann"] != stored["bob"]  # salted
    add_user(users, "ann", "battery staple", iterations=FAST_HASH)  # a new password replaces the old
    assert Logins(users)("ann", "battery staple") and not Logins(users)("ann", "correct horse")
    with pytest.raises(AccessError, match="at least 8"):
        add_user(users, "cid", "short")
    users.write_text("ann\n")
    with pytest.raises(AccessError, match=r"users:1: expected `name:pbkdf2_sha256"):
        read_users(users)
