"""Sharpen against the families' own code: tiny LLaDA, Dream, LLaDA-MoE, LLaDA 2, DreamOn and the
Qwen conversions (dllm's MDLM/BD3LM, SDAR, Open-dCoder) in their own layouts, loaded through
`load_model`, compared with what their reference modelling files and LLaDA's generate.py / Dream's
generation_utils.py / DreamOn's generator / dllm's MDLMSampler and BD3LMSampler / Open-dLLM's
_mdm_sample computed on them (tests/fixtures/parity/, written by tests/parity_fixtures.py and
tests/parity_fixtures_qwen.py; each fixture names its source files, commits and shims).

Tolerances: logits within the fixture's atol 1e-4 / rtol 1e-5 (float32 on CPU); sampler commits
and tokens exactly.
"""
import json

import pytest
import torch

from engine import Span, build_canvas, load_model
from engine.loop import denoise
from engine.resize import ResizingInfill
from engine.settings import PRESETS, SamplerSettings
from tests.parity import FAMILIES as FIRST_FAMILIES
from tests.parity import fingerprint, fixture_paths, tiny_weights, write_tiny
from tests.parity_qwen import FAMILIES as QWEN_FAMILIES
from tests.parity_qwen import SHIFTED

pytestmark = pytest.mark.parity
FAMILIES = FIRST_FAMILIES | QWEN_FAMILIES


def fixture(name: str) -> tuple[dict, dict[str, torch.Tensor]]:
    from safetensors.torch import load_file

    meta, logits = fixture_paths(name)
    return json.loads(meta.read_text()), load_file(str(logits))


@pytest.fixture(scope="module", params=list(FAMILIES))
def family(request, tmp_path_factory):
    """(name, Sharpen's model of the tiny checkpoint, fixture metadata, fixture tensors)."""
    name = request.param
    folder = tmp_path_factory.mktemp(name)
    write_tiny(FAMILIES[name](), folder)
    meta, tensors = fixture(name)
    return name, load_model(folder, device="cpu"), meta, tensors


def test_tiny_checkpoints_are_the_ones_the_reference_ran_on(family):
    name, _, meta, _ = family
    got = fingerprint(tiny_weights(FAMILIES[name]()))
    assert got == meta["checkpoint"]["fingerprint"], (
        "tests/parity.py no longer rebuilds the checkpoint the fixtures were computed on; rerun "
        "tests/parity_fixtures.py with the reference code")


def test_fixtures_name_their_source_commit_and_shims(family):
    _, _, meta, _ = family
    for record in meta["reference"]["files"].values():
        assert record["repo"] and len(record["commit"]) == 40 and len(record["sha256"]) == 64
    assert isinstance(meta["reference"]["shims"], list)


def test_sharpen_bans_only_ids_the_checkpoint_makes_improbable(family):
    """The reference samplers take an argmax over every id, Sharpen never writes its banned ones:
    the comparison holds because the checkpoint gives exactly those ids ~0 probability."""
    name, model, meta, _ = family
    length_tokens = {model.expand_id, model.delete_id}  # DreamOn's, allowed where it resizes
    assert set(model.codec.banned_ids) - length_tokens <= set(FAMILIES[name]().improbable_ids())
    assert model.mask_id == FAMILIES[name]().special_ids()["mask"]


def test_logits_match_the_reference_forward(family):
    name, model, meta, tensors = family
    ids, raw = tensors["ids"], tensors["logits"]
    tol = meta["logits"]["tolerance"]
    if name in ("dream", "dreamon", *SHIFTED):
        # Dream's head is shifted: its sampler reads position i from raw[i - 1], position 0 from
        # raw[0] (generation_utils: torch.cat([logits[:, :1], logits[:, :-1]], dim=1)).
        torch.testing.assert_close(model.net(ids), raw, **tol)
        raw = torch.cat([raw[:, :1], raw[:, :-1]], dim=1)
    torch.testing.assert_close(model.logits(ids), raw, **tol)


def matching_settings(run: dict) -> SamplerSettings:
    """Sharpen's settings for one reference sampler call: the `quality` preset (LLaDA's
    low-confidence remasking, whole canvas every forward) and the call's own step counts."""
    args = run["args"]
    if run["call"] == "generate.generate":   # LLaDA
        assert args["remasking"] == "low_confidence" and args["temperature"] == 0
        return PRESETS["quality"].replace(steps=args["steps"], block_length=args["block_length"])
    if run["call"] in ("MDLMSampler.sample", "BD3LMSampler.sample"):  # dllm's; block_size over the span
        assert args["remasking"] == "low_confidence" and args["temperature"] == 0
        return PRESETS["quality"].replace(steps=args["steps"], block_length=args["block_size"])
    assert args["temperature"] == 0 and not args["alg_temp"]  # Dream
    if args["alg"] == "entropy":  # lowest entropy first; a zero bound adds no extra commits
        return PRESETS["quality"].replace(strategy="entropy", entropy_bound=0.0)
    assert args["alg"] == "maskgit_plus"     # highest probability first
    return PRESETS["quality"]


def sharpen_commits(model, run: dict) -> tuple[list[list[list[int]]], list[int]]:
    """Sharpen's denoise on the reference run's canvas: [[position, token], ...] per step, and
    the final canvas."""
    start, end = run["span"]
    ids = torch.tensor(run["final"])
    ids[start:end] = model.mask_id
    steps = list(denoise(model, ids, ((start, end),), torch.zeros(len(ids), dtype=torch.bool),
                         matching_settings(run)))
    per_step = [[[int(p), int(t)] for p, t in zip(s.positions[s.committed[0]], s.tokens[0][s.committed[0]])]
                for s in steps]
    final = ids.clone()
    final[start:end] = steps[-1].tokens[0]
    return per_step, final.tolist()


def runs(name: str) -> list[tuple[str, int]]:
    meta, _ = fixture(name)
    return [(name, i) for i in range(len(meta["sampler"]))]


@pytest.mark.parametrize("name, index", runs("llada") + runs("llada_moe") + runs("a2d_qwen3") + runs("a2d_qwen2")
                         + runs("a2d_qwen3_bd3lm"))
def test_llada_sampler_commits_what_generate_py_commits(name, index, tmp_path):
    """LLaDA's generate.py at temperature 0, low-confidence remasking, with and without blocks,
    one and two tokens per forward, on LLaDA and LLaDA-MoE; dllm's MDLMSampler and BD3LMSampler
    (the same algorithm, one token per forward; BD3LM's with its prefix cache, block-causal) on its
    Qwen conversions: the same positions, tokens and steps."""
    write_tiny(FAMILIES[name](), tmp_path / name)  # a BD3LM folder is told by its name
    meta, _ = fixture(name)
    run = meta["sampler"][index]
    per_step, final = sharpen_commits(load_model(tmp_path / name, device="cpu"), run)
    assert per_step == run["steps"]
    assert final == run["final"]


@pytest.mark.parametrize("name, index", runs("dream") + runs("open_dcoder"))
def test_dream_sampler_commits_in_diffusion_generates_order(name, index, tmp_path):
    """Dream's diffusion_generate at temperature 0 (alg entropy / maskgit_plus, steps = tokens),
    and Open-dLLM's _mdm_sample (Dream's schedule and confidences) on Open-dCoder.

    Its schedule, int(masked * (1 - s/t)), commits nothing in the first forward and two tokens in
    the last; Sharpen commits one per forward. So: the same positions in the same order, the same
    token wherever Dream committed one token per forward, and the same token for the better-ranked
    of its final two (Sharpen commits that one from the same canvas). The last token comes from a
    forward Dream never ran; it is not compared."""
    write_tiny(FAMILIES[name](), tmp_path)
    meta, _ = fixture(name)
    run = meta["sampler"][index]
    per_step, _ = sharpen_commits(load_model(tmp_path, device="cpu"), run)
    theirs = [step for step in run["steps"] if step]        # Dream's first forward commits nothing
    assert [len(step) for step in theirs] == [1] * (len(theirs) - 1) + [2]
    assert all(len(step) == 1 for step in per_step) and len(per_step) == len(theirs) + 1
    assert per_step[:-2] == theirs[:-1]                     # one token per forward: identical
    last_pair = {p: t for p, t in theirs[-1]}
    (p, t), (q, _) = per_step[-2][0], per_step[-1][0]
    assert {p, q} == set(last_pair) and t == last_pair[p]


def test_dreamon_resizes_as_its_own_generator_does(tmp_path):
    """DreamOn's eval/generator.py (temperature 0, alg entropy, one token per forward, an
    end-of-text at a masked slot deleted, expand capped at max_gen_len slots) against Sharpen's
    ResizingInfill with the entropy strategy: the model is shown the same canvas at every
    forward (the span growing from 4 to 10 slots, then shrinking), and the result is the same."""
    write_tiny(FAMILIES["dreamon"](), tmp_path)
    model = load_model(tmp_path, device="cpu")
    run = fixture("dreamon")[0]["sampler"][0]
    (a, b), tok = run["span"], model.codec.tokenizer
    before = " ".join(tok.convert_ids_to_tokens(run["prompt"][:a]))
    after = " ".join(tok.convert_ids_to_tokens(run["prompt"][b:]))
    canvas = build_canvas(model.codec, f"{before} t0 t0 {after}", [Span(len(before) + 1, len(before) + 6, b - a)])
    assert canvas.span_ranges == ((a, b),) and canvas.ids[:a].tolist() == run["prompt"][:a]
    seen: list[list[int]] = []
    forward = model.logits_at
    model.logits_at = lambda ids, positions: (seen.append(ids[0].tolist()), forward(ids, positions))[1]
    settings = PRESETS["quality"].replace(strategy="entropy", entropy_bound=0.0)
    resizing = ResizingInfill(model, canvas, settings, max_slots=run["args"]["max_gen_len"])
    last = list(resizing)[-1]
    assert seen == run["inputs"]
    assert last.done and resizing.canvas.ids.tolist() == run["final"]
