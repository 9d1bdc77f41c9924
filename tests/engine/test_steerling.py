"""The Steerling family against the steerling package (tests/fixtures/parity/steerling.*, written by
tests/steerling_fixtures.py on the tiny checkpoint of tests/steerling_tiny.py): logits, the concept
heads' outputs, and logits under steering; then steering as a setting through the loop, and the
block-causal attention's reach. Tolerances: the fixture's (atol 1e-4, rtol 1e-5, float32 on CPU)."""
import json

import pytest
import torch

from engine import Span, build_canvas, load_model
from engine.concepts import steer_for
from engine.families import steerling_net
from engine.families.steerling_net import top_features
from engine.infill import infill
from engine.loop import run
from engine.model import ForwardCall
from engine.settings import PRESETS, SamplerSettings, parse_steer
from tests.parity import FIXTURES, fingerprint
from tests.steerling_tiny import CONFIG, IDS, tiny_weights, write_tiny_steerling


@pytest.fixture(scope="module")
def fixture():
    from safetensors.torch import load_file

    return json.loads((FIXTURES / "steerling.json").read_text()), load_file(str(FIXTURES / "steerling.safetensors"))


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("steerling")
    write_tiny_steerling(folder)
    return load_model(folder, device="cpu")


def named(steer: dict) -> tuple[tuple[str, float], ...]:
    """A fixture's steer ({"known": {id: w}, "unknown": {...}}) as the concept names the tiny labels give."""
    return (*((f"concept {i}", w) for i, w in steer["known"].items()),
            *((f"unknown {i}", w) for i, w in steer["unknown"].items()))


@pytest.mark.parity
def test_checkpoint_is_the_one_the_package_ran_on(fixture):
    meta, _ = fixture
    assert fingerprint(tiny_weights()) == meta["checkpoint"]["fingerprint"]
    assert meta["checkpoint"]["config"] == CONFIG
    assert len(meta["reference"]["wheel_sha256"]) == 64 and meta["reference"]["package"] == "steerling==0.2.0"


@pytest.mark.parity
def test_logits_match_the_package(model, fixture):
    meta, t = fixture
    torch.testing.assert_close(model.logits(t["ids"]), t["logits"], **meta["tolerance"])


@pytest.mark.parity
def test_concept_heads_match_the_package(model, fixture):
    """The known head's top-k (ids, logits) and features, the unknown head's features and top-k."""
    meta, t = fixture
    tol, net = meta["tolerance"], model.net
    h = net.hidden(t["ids"]).reshape(-1, net.shape.width)
    c = net.concepts
    features, _, _ = top_features(net.known, h, c.known_features)
    torch.testing.assert_close(features.view_as(t["known_features"]), t["known_features"], **tol)
    _, ids, weights = top_features(net.known, h, c.known_topk)   # the package's top-k "for loss"
    assert torch.equal(ids.view_as(t["known_topk_indices"]), t["known_topk_indices"])
    torch.testing.assert_close(weights.view_as(t["known_topk_logits"]), torch.sigmoid(t["known_topk_logits"]), **tol)
    unknown, ids, weights = top_features(net.unknown, h, c.unknown_topk)
    torch.testing.assert_close(unknown.view_as(t["unknown_features"]), t["unknown_features"], **tol)
    assert torch.equal(ids.view_as(t["unknown_topk_indices"]), t["unknown_topk_indices"])
    expected = torch.sigmoid(t["unknown_topk_logits"])
    torch.testing.assert_close(weights.view_as(expected), expected, **tol)


@pytest.mark.parity
@pytest.mark.parametrize("key", ["steer_known", "steer_unknown", "steer_both"])
def test_steered_logits_match_the_package_interventions(model, fixture, key):
    meta, t = fixture
    ids = t["ids"]
    call = ForwardCall(ids, torch.arange(ids.shape[1]), steer=named(meta["steers"][key]))
    got = model.forward_many([call])[0]
    torch.testing.assert_close(got, t[key], **meta["tolerance"])
    if key != "steer_unknown":  # with epsilon correction an unknown-only steer changes nothing (as the package)
        assert (got - t["logits"]).abs().max() > 1.0


@pytest.mark.parity
def test_a_large_head_steers_as_the_package_does(model, fixture, monkeypatch):
    """The released unknown head (101,196 concepts) corrects its top-k features instead of mixing
    dense weights: forced here on the tiny heads, as the fixture forced the package's."""
    meta, t = fixture
    monkeypatch.setattr(steerling_net, "LARGE", 0)
    call = ForwardCall(t["ids"], torch.arange(t["ids"].shape[1]), steer=named(meta["steers"]["steer_both"]))
    got = model.forward_many([call])[0]
    torch.testing.assert_close(got, t["steer_both_large"], **meta["tolerance"])
    assert not torch.allclose(got, t["steer_both"], atol=1e-3)


def test_block_causal_a_span_does_not_see_past_its_block(model):
    """Changing text after a slot's block leaves its logits exactly alone; inside the block it does not."""
    block = model.attention_block
    ids = torch.randint(0, 200, (1, 3 * block))
    ids[0, block:block + 4] = model.mask_id
    later, same_block = ids.clone(), ids.clone()
    later[0, 2 * block + 3] = (int(ids[0, 2 * block + 3]) + 1) % 200
    same_block[0, block + 9] = (int(ids[0, block + 9]) + 1) % 200
    slots = torch.arange(block, block + 4)
    base = model.logits_at(ids, slots)
    assert torch.equal(model.logits_at(later, slots), base)
    assert not torch.allclose(model.logits_at(same_block, slots), base)


def test_steer_setting_is_read_and_refused_with_one_line():
    assert parse_steer("concept 3=2, unknown 5 = -1.5") == (("concept 3", 2.0), ("unknown 5", -1.5))
    assert SamplerSettings(steer="").steer == ""
    for bad, says in [("concept 3", "NAME=WEIGHT"), ("a=x", "number"), ("a=nan", "finite"), ("a=1e9", "finite"),
                      ("a=1, a=2", "twice")]:
        with pytest.raises(ValueError, match=says) as err:
            SamplerSettings(steer=bad)
        assert str(err.value).startswith("steer: ") and "\n" not in str(err.value)


def test_unknown_concept_names_are_refused_before_a_run(model, tmp_path):
    with pytest.raises(ValueError, match=r"^steer: unknown concept 'sarcasm'"):
        steer_for(model, SamplerSettings(steer="concept 1=1, sarcasm=2"))
    assert steer_for(model, SamplerSettings(steer="concept 1=1")) == (("concept 1", 1.0),)
    from tests.tiny import save_tiny_llada
    other = load_model(save_tiny_llada(tmp_path / "llada"), device="cpu")
    with pytest.raises(ValueError, match="^steer: .* names no concepts"):
        steer_for(other, SamplerSettings(steer="concept 1=1"))
    write_tiny_steerling(tmp_path / "unlabelled")
    (tmp_path / "unlabelled" / "concept_labels.csv").unlink()
    with pytest.raises(ValueError, match="^steer: .* names no concepts .*concept_labels.csv"):
        steer_for(load_model(tmp_path / "unlabelled", device="cpu"), SamplerSettings(steer="concept 1=1"))


def test_steering_changes_an_edit_and_keeps_the_text_outside(model):
    """Through infill (the path every entry point takes): a strong steer toward one concept changes
    the span; text outside it is identical; same seed, same result."""
    text = " ".join(f"t{i}" for i in range(10, 40))
    canvas = build_canvas(model.codec, text, [Span(30, 50)], model.max_length)
    settings = PRESETS["quality"]
    plain = run(infill(model, canvas, settings)).texts[0]
    steer = settings.replace(steer="concept 0=30")  # a weight of 30 dominates the features
    steered = run(infill(model, canvas, steer)).texts[0]
    again = run(infill(model, canvas, steer)).texts[0]
    assert steered != plain and steered == again
    assert steered[:30] == text[:30] and steered.endswith(text[50:])


def test_attributions_name_known_concepts(model):
    ids = torch.randint(0, 200, (40,))
    ids[10:14] = IDS["mask"]
    rows = model.attributions(ids, 11, 7)
    assert rows and rows[-1][0] == "unknown + residual"
    assert all(name.startswith("concept ") and value > 0 for name, value in rows[:-1])
    assert [v for _, v in rows[:-1]] == sorted((v for _, v in rows[:-1]), reverse=True)
    steered = model.attributions(ids, 11, 7, steer=(("concept 2", 40.0),))
    assert steered != rows  # read under the edit's steer: concept 2 at weight 40


def test_block_causal_families_say_their_block(model, tmp_path):
    """What the page's title shows (page.views.title_html): Steerling's 16-token blocks here, LLaDA 2's 32."""
    from page.views import title_html
    from tests.parity import FAMILIES, write_tiny

    write_tiny(FAMILIES["llada2"](), tmp_path)
    assert (model.attention_block, load_model(tmp_path, device="cpu").attention_block) == (16, 32)
    shown = title_html(model.label, False, model.attention_block)
    assert "block-causal (16)" in shown and "not the rest of the document after it" in shown
    assert "block-causal" not in title_html("LLaDA-8B", False)


def test_a_folder_without_tokenizer_json_is_refused_saying_why(tmp_path):
    from engine.model import ModelNotFound

    write_tiny_steerling(tmp_path)
    (tmp_path / "tokenizer.json").unlink()
    with pytest.raises(ModelNotFound, match="cl100k_base .* tokenizer.json"):
        load_model(tmp_path, device="cpu")


def test_a_variant_sharpen_cannot_run_is_refused_naming_the_key(tmp_path):
    from engine.model import UnsupportedModel

    write_tiny_steerling(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text()) | {"use_attention_known": True}
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(UnsupportedModel, match="use_attention_known=True"):
        load_model(tmp_path, device="cpu")


def test_the_memory_estimate_reads_steerlings_config_keys(tmp_path):
    from engine.memory import ModelSize

    write_tiny_steerling(tmp_path)
    size = ModelSize.of_folder(tmp_path, CONFIG)
    assert (size.width, size.kv_width, size.layers) == (64, 2 * 16, 2)


def test_the_concepts_tool_lists_names_to_steer_with_the_tokens_they_promote(model, tmp_path):
    import io

    from engine.tools.concepts import main, promoted

    write_tiny_steerling(tmp_path)
    out = io.StringIO()
    assert main(["--model", str(tmp_path), "3", "--tokens", "2"], out) == 0
    lines = out.getvalue().splitlines()
    assert lines[0].split()[:3] == ["known", "3", "concept"] and "->" in lines[0]
    assert any(line.startswith("unknown") and line.endswith("unknown 3") for line in lines)
    assert all("3" in line.split("->")[0] for line in lines)
    # the promoted tokens are the ones a steer toward the concept raises most
    tokens = [t for t, _ in promoted(model, 3, 3)]
    ids = torch.randint(0, 200, (1, 20))
    ids[0, 8] = model.mask_id
    rows = torch.tensor([8])
    base = model.logits_at(ids, rows)[0, 0]
    steered = model.forward_many([ForwardCall(ids, rows, steer=(("concept 3", 40.0),))])[0][0, 0]
    assert model.codec.token_text(int((steered - base).argmax())) in tokens


def test_a_labels_file_it_cannot_read_is_refused_naming_the_line(tmp_path):
    write_tiny_steerling(tmp_path)
    labels = tmp_path / "concept_labels.csv"
    labels.write_text(labels.read_text().replace("3,concept 3,", "three,concept 3,"))
    with pytest.raises(ValueError, match="concept_labels.csv line 5: expected the columns concept_id"):
        load_model(tmp_path, device="cpu")
