"""Adapting a Llama net to masked diffusion (engine.tools.train) and its corpus split, on a tiny net."""
import copy

import pytest
import torch

from engine.families.bundled import apply_adapter
from engine.families.llama_net import LlamaNet, LlamaShape
from engine.tools import corpus
from engine.tools.train import TrainConfig, attach, diffusion_loss, noise, train

SHAPE = LlamaShape(vocab=64, width=32, layers=2, heads=4, kv_heads=2, ffn=48, tie_embeddings=True)
MASK, START = 3, 1


def tiny_net(seed: int = 0) -> LlamaNet:
    torch.manual_seed(seed)
    net = LlamaNet(SHAPE)
    with torch.no_grad():
        for p in net.parameters():
            if p.dim() == 2:
                p.normal_(0, 0.3)
    return net.eval().requires_grad_(False)


def pools(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {"code": torch.randint(4, 64, (10, 16), generator=g),
            "prose": torch.randint(4, 64, (10, 16), generator=g)}


pytestmark = pytest.mark.usefixtures("one_thread")


CONFIG = TrainConfig(steps=6, seq=16, batch=2, rank=4, lr=1e-2, warmup=2, checkpoint_every=3, eval_rows=2)


def test_loss_decreases_on_a_repeated_batch():
    net = tiny_net()
    params = attach(net, MASK, rank=4, scale=2.0, seed=0)
    opt = torch.optim.AdamW(params.values(), lr=3e-2)
    ids = pools()["code"][:4]
    noisy, masked, t = noise(ids, MASK, 1e-3, torch.Generator().manual_seed(0))
    losses = []
    for _ in range(25):
        loss = diffusion_loss(net, ids, noisy, masked, t, START)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_only_lora_and_mask_row_train():
    net = tiny_net()
    params = attach(net, MASK, rank=4, scale=2.0, seed=0)
    trainable = {id(p) for p in net.parameters() if p.requires_grad}
    assert trainable == {id(p) for p in params.values()}
    assert len(params) == SHAPE.layers * 7 * 2 + 1


def test_resume_matches_an_uninterrupted_run(tmp_path):
    data, held = pools(), pools(1)["code"][:2]
    kw = dict(mask_id=MASK, start_id=START, log_every=100)
    train(tiny_net(), data, held, config=CONFIG, out=tmp_path / "a.safetensors",
          checkpoint=tmp_path / "a.pt", resume=False, **kw)
    half = TrainConfig(**{**CONFIG.__dict__, "steps": 3})
    train(tiny_net(), data, held, config=half, out=tmp_path / "b.safetensors",
          checkpoint=tmp_path / "b.pt", resume=False, **kw)
    train(tiny_net(), data, held, config=CONFIG, out=tmp_path / "b.safetensors",
          checkpoint=tmp_path / "b.pt", resume=True, **kw)
    a, b = torch.load(tmp_path / "a.pt", weights_only=False), torch.load(tmp_path / "b.pt", weights_only=False)
    assert a["step"] == b["step"] == 6
    for name, value in a["params"].items():
        assert torch.equal(value, b["params"][name]), name
    assert [h["heldout_ce"] for h in a["history"]] == [h["heldout_ce"] for h in b["history"]]


def test_adapter_merges_as_w_plus_scale_b_a(tmp_path):
    from safetensors import safe_open

    net = tiny_net()
    base_state = {k: v.clone() for k, v in net.state_dict().items()}
    reference = copy.deepcopy(net)
    path = tmp_path / "adapter.safetensors"
    once = TrainConfig(**{**CONFIG.__dict__, "checkpoint_every": CONFIG.steps})  # the file = the last step
    train(net, pools(), pools(1)["code"][:2], mask_id=MASK, start_id=START, config=once,
          out=path, checkpoint=tmp_path / "c.pt", resume=False, log_every=100)
    merged = apply_adapter(base_state, path, MASK)
    with safe_open(str(path), framework="pt") as f:
        scale = float(f.metadata()["lora_scale"])
        file = {k: f.get_tensor(k).float() for k in f.keys()}
    assert scale == CONFIG.scale
    q = "blocks.1.attn.q.weight"
    assert torch.equal(merged[q], base_state[q] + scale * (file[q + ".lora_b"] @ file[q + ".lora_a"]))
    assert not torch.equal(merged[q], base_state[q])
    assert torch.equal(merged["embed.weight"][MASK], file["mask_embedding"])
    assert torch.equal(merged["embed.weight"][MASK + 1], base_state["embed.weight"][MASK + 1])
    # The merged plain net computes what the LoRA-wrapped net computed (up to float16 factors).
    reference.load_state_dict(merged)
    ids = torch.tensor([[START, 5, MASK, 9, MASK, 20]])
    with torch.no_grad():
        assert torch.allclose(reference(ids), net(ids), atol=2e-2)


def doc(kind: str, name: str, size: int = 0) -> corpus.CorpusText:
    return corpus.CorpusText(kind, name, f"<{name}>" + "x" * size)


def test_split_is_deterministic_and_disjoint():
    docs = [doc("code", f"pkg/mod{i}.py") for i in range(400)] + [doc("code", n) for n in corpus.BENCH_FILES]
    docs += [doc("prose", f"pydoc:topic{i:03d}", 10_000) for i in range(100)]
    train_a, held_a = corpus.split(docs)
    train_b, held_b = corpus.split(list(reversed(docs)))
    assert {d.name for d in held_a} == {d.name for d in held_b}
    assert {d.name for d in train_a}.isdisjoint(d.name for d in held_a)
    assert set(corpus.BENCH_FILES) <= {d.name for d in held_a}
    assert "pydoc:topic000" in {d.name for d in held_a}   # engine.tools.bench reads the first topics
    held_code = [d for d in held_a if d.kind == "code" and d.name.startswith("pkg/")]
    assert 0.02 < len(held_code) / 400 < 0.1
    rows = corpus.chunks(train_a, lambda s: [ord(c) for c in s], 8, separator=0)
    text = "".join(chr(i) for i in rows.flatten().tolist() if i)
    assert all(f"<{d.name}>" not in text for d in held_a)


@pytest.mark.slow
def test_real_split_holds_out_the_benchmark_files():
    train_docs, held = corpus.split()
    names = {d.name for d in held}
    assert set(corpus.BENCH_FILES) <= names
    assert names.isdisjoint(d.name for d in train_docs)


def test_span_rows_mask_one_contiguous_run_and_weigh_by_its_share():
    ids = torch.randint(4, 64, (64, 32), generator=torch.Generator().manual_seed(3))
    noisy, masked, t = noise(ids, MASK, 1e-3, torch.Generator().manual_seed(0), span_share=1.0, max_span=10)
    assert (noisy[masked] == MASK).all() and (noisy[~masked] == ids[~masked]).all()
    for row, share in zip(masked, t):
        where = row.nonzero().flatten()
        assert 1 <= len(where) <= 10
        assert (where == torch.arange(where[0], where[0] + len(where))).all()  # one run
        assert share.item() == pytest.approx(len(where) / 32)
    lengths = masked.sum(-1)
    assert lengths.min() < lengths.max()  # lengths vary


def test_span_share_mixes_span_rows_with_independent_masks():
    ids = torch.randint(4, 64, (400, 32), generator=torch.Generator().manual_seed(3))
    _, masked, _ = noise(ids, MASK, 1e-3, torch.Generator().manual_seed(0), span_share=0.5, max_span=8)
    first, last = masked.float().argmax(-1), 31 - masked.flip(-1).float().argmax(-1)
    one_run = (last - first + 1) == masked.sum(-1)
    wide = masked.sum(-1) > 8  # only independent masking can exceed max_span
    assert wide.float().mean() > 0.2 and one_run.float().mean() > 0.5


def test_learning_rate_warms_up_holds_then_decays_to_zero():
    from engine.tools.train import lr_at
    config = TrainConfig(steps=100, lr=1.0, warmup=10, decay_from=60)
    rates = [lr_at(s, config) for s in range(100)]
    assert rates[0] == pytest.approx(0.1) and rates[30] == rates[59] == 1.0
    assert rates[80] == pytest.approx(0.5) and rates[99] == pytest.approx(0.025)
    assert all(a >= b for a, b in zip(rates[60:], rates[61:]))
    with pytest.raises(ValueError, match="decay_from"):
        TrainConfig(steps=10, decay_from=10)
    with pytest.raises(ValueError, match="max_span"):
        TrainConfig(seq=16, span_share=0.5, max_span=32)


def test_noise_level_has_a_floor_so_no_row_weighs_more_than_one_over_eps():
    eps = TrainConfig().eps
    assert eps == 0.05
    ids = torch.randint(4, 64, (4000, 16), generator=torch.Generator().manual_seed(3))
    _, masked, t = noise(ids, MASK, eps, torch.Generator().manual_seed(0))
    assert t.min() >= eps and t.min() < eps + 0.01   # the floor is reached, never crossed
    assert (1 / t).max() <= 1 / eps
    with pytest.raises(ValueError, match="eps"):
        TrainConfig(eps=0.0)


def write_distribution(site, name: str, licence: dict[str, str], files: dict[str, str],
                       readme: str = "") -> None:
    """A fake installed distribution: <name>.dist-info with METADATA and RECORD, and its files."""
    info = site / f"{name}-1.0.dist-info"
    info.mkdir(parents=True)
    head = "".join(f"{k}: {v}\n" for k, v in [("Metadata-Version", "2.4"), ("Name", name),
                                                 ("Version", "1.0"), *licence.items()])
    (info / "METADATA").write_text(head + "\n" + readme)
    for rel, text in files.items():
        (site / rel).parent.mkdir(parents=True, exist_ok=True)
        (site / rel).write_text(text)
    (info / "RECORD").write_text("".join(f"{rel},,\n" for rel in [*files, f"{info.name}/METADATA"]))


def test_packages_join_the_corpus_only_with_permissive_licences_and_never_their_tests(tmp_path):
    import importlib.metadata

    code = "def helper(value):\n    return value * 2  # doubled for the caller\n"
    readme = "A package that doubles numbers. " * 20
    write_distribution(tmp_path, "okpkg", {"License-Expression": "MIT OR Apache-2.0"},
                       {"okpkg/core.py": code, "okpkg/tests/test_core.py": code + "#t",
                        "okpkg/_vendor/other.py": code + "#v", "okpkg/guide.md": readme + "guide",
                        "okpkg/LICENSE.md": readme + "licence"}, readme)
    write_distribution(tmp_path, "classic", {"Classifier": "License :: OSI Approved :: BSD License"},
                       {"classic/mod.py": code + "# classic\n"})
    write_distribution(tmp_path, "gplpkg", {"License": "GPL-3.0-or-later"}, {"gplpkg/a.py": code + "#g"})
    write_distribution(tmp_path, "mixed", {"License-Expression": "MIT AND MPL-2.0"}, {"mixed/a.py": code + "#m"})
    docs, licences = corpus.package_documents(dists=importlib.metadata.distributions(path=[str(tmp_path)]))
    assert licences == {"okpkg": "MIT OR Apache-2.0", "classic": "BSD"}
    assert sorted(d.name for d in docs) == ["pkg:classic/mod.py", "pkg:okpkg/core.py",
                                            "pkg:okpkg/guide.md", "readme:okpkg"]
    assert {d.name: d.kind for d in docs}["readme:okpkg"] == "prose"
    again = corpus.package_documents(dists=importlib.metadata.distributions(path=[str(tmp_path)]))
    assert again == (docs, licences)   # deterministic


def test_a_package_copy_of_a_heldout_file_is_held_out_with_it():
    lines = "".join(f"    value_{i} = compute_something({i})\n" for i in range(40))
    textwrap = corpus.CorpusText("code", "textwrap.py", "def wrap():\n" + lines, "stdlib")
    copy_ = corpus.CorpusText("code", "pkg:backports/textwrap.py", "def wrap2():\n" + lines, "somepkg")
    other = corpus.CorpusText("code", "pkg:backports/other.py", "def f():\n    return 1\n", "somepkg")
    same_text = corpus.CorpusText("code", "pkg:x/renamed.py", textwrap.text, "somepkg")
    train_docs, held = corpus.split([textwrap, copy_, other, same_text])
    assert {d.name for d in held} == {"textwrap.py", "pkg:backports/textwrap.py", "pkg:x/renamed.py"}
    assert [d.name for d in train_docs] == ["pkg:backports/other.py"]


def test_the_eval_heldout_set_is_the_same_with_packages_added():
    stdlib = [doc("code", f"mod{i}.py", 10) for i in range(300)]
    stdlib = [corpus.CorpusText(d.kind, d.name, d.text, "stdlib") for d in stdlib]
    package = [corpus.CorpusText("code", f"pkg:p/mod{i}.py", f"x = {i}\n", "p") for i in range(300)]
    _, held_alone = corpus.split(stdlib)
    _, held_with = corpus.split(stdlib + package)
    assert [d for d in held_with if d.source == "stdlib"] == held_alone


@pytest.mark.parametrize("fields, expected", [
    ({"License-Expression": "BSD-3-Clause AND 0BSD AND MIT AND Zlib AND CC0-1.0"},
     "BSD-3-Clause AND 0BSD AND MIT AND Zlib AND CC0-1.0"),
    ({"License-Expression": "Apache-2.0 WITH LLVM-exception"}, "Apache-2.0 WITH LLVM-exception"),
    ({"License-Expression": "LGPL-3.0-only"}, None),
    ({"Classifier": "License :: OSI Approved :: Mozilla Public License 2.0 (MPL 2.0)"}, None),
    ({"License": "Apache 2.0 License"}, "Apache"),
    ({"License": "MPL-2.0 AND MIT"}, None),
    ({"License": "Dual licensed"}, None),
    ({}, None),
])
def test_permissive_licence_reads_expression_classifiers_then_the_licence_field(fields, expected):
    from email.message import Message

    meta = Message()
    for key, value in fields.items():
        meta[key] = value
    assert corpus.permissive_licence(meta) == expected


def test_names_held_out_elsewhere_are_held_out_here_too():
    docs = [doc("code", f"pkg/mod{i}.py") for i in range(200)]
    _, held = corpus.split(docs)
    name = next(d.name for d in docs if d not in held)
    _, held_also = corpus.split(docs, also=[name])
    assert {d.name for d in held_also} == {d.name for d in held} | {name}


def test_doc_folders_give_prose_with_their_licence_and_absent_ones_nothing(tmp_path):
    (tmp_path / "fs.md").write_text("# File system\n\n" + "The fs module reads files. " * 30)
    (tmp_path / "tiny.md").write_text("# Stub\n")
    (tmp_path / "notes.txt").write_text("not matched " * 50)
    folders = {"docs": (tmp_path, "*.md", "MIT"), "gone": (tmp_path / "missing", "*.md", "MIT")}
    docs, licences = corpus.folder_documents(folders)
    assert [(d.name, d.kind, d.source) for d in docs] == [("docs:fs.md", "prose", "docs")]
    assert licences == {"docs": "MIT"}
