"""`python -m engine pull REPO_ID`: check a hub model's family from its config, then download only the
files its loader reads into the Hugging Face cache (resumable), and say what it will need in memory.

The only place Sharpen downloads a model: `--model REPO_ID` reads the cache and never fetches.
"""
from __future__ import annotations

import argparse
import errno
import fnmatch
import json
import os
import shutil
import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import torch

from . import memory
from .load import default_device, estimate, family_module, looks_like_repo_id, pick_device
from .model import UnsupportedModel

# What every family's loader reads from a model folder, at its top level: config, weights (safetensors
# only: their headers give the memory estimate, and pickled .bin files can run code), tokenizer files.
NEEDED = ("config.json", "generation_config.json", "*.safetensors", "model.safetensors.index.json",
          "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
          "vocab.json", "vocab.txt", "merges.txt", "*.model", "chat_template.jinja", "chat_template.json")


class PullError(RuntimeError):
    """A pull that cannot go on; the message is one line saying why and what to do."""


@dataclass(frozen=True)
class Pulled:
    """A pulled model: its id, the cached snapshot folder, its family's module and the estimate."""

    repo_id: str
    folder: Path
    family: str
    memory: memory.MemoryPlan


def pull(repo_id: str, revision: str | None = None, *, cache_dir: Path | None = None, endpoint: str | None = None,
         device: torch.device | None = None, say: Callable[[str], None] = print,
         free_bytes: Callable[[Path], int] | None = None) -> Pulled:
    """Download `repo_id` at `revision` (default: main) into the hub cache, config first: a family
    Sharpen cannot load is refused before any weight is fetched. Files already in the cache are not
    fetched again; a dropped connection resumes where it stopped (huggingface_hub retries with an
    HTTP Range). PullError (one line) for every expected failure."""
    if not looks_like_repo_id(repo_id):
        raise PullError(f"{repo_id!r} is not a hub id: give OWNER/NAME (e.g. GSAI-ML/LLaDA-8B-Instruct)")
    with hub_errors(repo_id, revision, endpoint):
        config = read_config(repo_id, revision, cache_dir, endpoint)
        try:
            family = family_module(config)
        except UnsupportedModel as err:
            raise PullError(f"{repo_id}: {err} Nothing was downloaded.") from None
        files = plan_files(repo_id, revision, cache_dir, endpoint)
        need = sum(f.file_size for f in files if f.will_download)
        cache = Path(cache_dir) if cache_dir is not None else hub_cache()
        check_space(cache, need, (free_bytes or free_space)(cache))
        say(f"{repo_id}: family {family.rsplit('.', 1)[-1]}; {len(files)} files, "
            f"{readable(need)} to download into {cache}")
        folder = download(repo_id, revision, [f.filename for f in files], cache_dir, endpoint)
    size = memory.ModelSize.of_folder(folder, config)
    device = device or default_device()
    plan = estimate(size, device)
    say(f"pulled {repo_id} into {folder}")
    say(f"memory: {plan}" + ("" if plan.fits else " (will not fit on this machine)"))
    return Pulled(repo_id, folder, family, plan)


def hub_cache() -> Path:
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def read_config(repo_id: str, revision: str | None, cache_dir: Path | None, endpoint: str | None) -> dict:
    """config.json alone, fetched first (a few kB): it names the family."""
    from huggingface_hub import hf_hub_download

    path = hf_hub_download(repo_id, "config.json", revision=revision, cache_dir=cache_dir, endpoint=endpoint)
    try:
        config = json.loads(Path(path).read_text())
    except (ValueError, UnicodeDecodeError) as err:
        raise PullError(f"{repo_id}: its config.json is not JSON ({err})") from None
    if not isinstance(config, dict):
        raise PullError(f"{repo_id}: its config.json is not a JSON object")
    return config


def plan_files(repo_id: str, revision: str | None, cache_dir: Path | None, endpoint: str | None) -> list:
    """The repository's top-level files a loader reads (huggingface_hub's dry run: sizes and which
    are not in the cache yet); a repository without safetensors weights is refused."""
    from huggingface_hub import snapshot_download

    listed = snapshot_download(repo_id, revision=revision, cache_dir=cache_dir, endpoint=endpoint,
                               allow_patterns=list(NEEDED), dry_run=True)
    files = [f for f in listed if "/" not in f.filename]  # loaders read the top level only
    if not any(fnmatch.fnmatch(f.filename, "*.safetensors") for f in files):
        raise PullError(f"{repo_id}: no .safetensors weights at its top level (Sharpen reads no pickled "
                        ".bin checkpoints). Nothing was downloaded.")
    return files


def download(repo_id: str, revision: str | None, names: list[str], cache_dir: Path | None,
             endpoint: str | None) -> Path:
    """Exactly `names`, with huggingface_hub's progress bars (it skips the files already cached)."""
    from huggingface_hub import snapshot_download

    return Path(snapshot_download(repo_id, revision=revision, cache_dir=cache_dir, endpoint=endpoint,
                                  allow_patterns=names))


def partial_files(cache: Path, repo_id: str) -> set[Path]:
    """The repository's blobs still being written (huggingface_hub names them `*.incomplete`)."""
    return set((cache / f"models--{repo_id.replace('/', '--')}" / "blobs").glob("*.incomplete"))


def free_space(folder: Path) -> int:
    """Free bytes on the disk that holds `folder` (or its nearest existing parent)."""
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return shutil.disk_usage(folder).free


def check_space(cache: Path, need: int, free: int) -> None:
    if need > free:
        raise PullError(f"not enough disk space: the download needs {readable(need)} in {cache}, which has "
                        f"{readable(free)} free. Free some, or set HF_HOME to a bigger disk. Nothing was downloaded.")


def readable(n: int) -> str:
    """Bytes as GB, or MB under one GB."""
    return f"{n / memory.GB:.1f} GB" if n >= memory.GB else f"{n / 1e6:.1f} MB"


@contextmanager
def hub_errors(repo_id: str, revision: str | None, endpoint: str | None) -> Iterator[None]:
    """huggingface_hub's exceptions (and a full disk, and Ctrl+C) as PullError's one line each."""
    try:
        yield
    except PullError:
        raise
    except BaseException as err:
        message = explain(err, repo_id, revision, endpoint)
        if message is None:
            raise
        raise PullError(message) from err


def explain(err: BaseException, repo: str, revision: str | None, endpoint: str | None) -> str | None:
    """The one line for an expected failure of a pull; None for anything else (a bug: its traceback)."""
    from huggingface_hub import constants
    from huggingface_hub.errors import (
        DryRunError,
        EntryNotFoundError,
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    again = f"run `python -m engine pull {repo}` again to finish"
    offline = isinstance(err, OfflineModeIsEnabled) or (
        isinstance(err, (LocalEntryNotFoundError, DryRunError)) and constants.is_offline_mode())
    if isinstance(err, KeyboardInterrupt):
        return f"interrupted: the files of {repo} that were complete are kept; {again}"
    if isinstance(err, OSError) and err.errno == errno.ENOSPC:
        return f"the disk filled up while downloading {repo}; free some space, then {again}"
    if isinstance(err, GatedRepoError):
        return f"{repo} is gated: accept its terms on the hub and log in (`hf auth login`), then pull again"
    if isinstance(err, RepositoryNotFoundError):
        return f"no model {repo} on the hub (check the name; a private one needs `hf auth login`)"
    if isinstance(err, RevisionNotFoundError):
        return f"{repo} has no revision {revision!r}"
    if offline:
        return "HF_HUB_OFFLINE is set: pulling needs the network; run it without HF_HUB_OFFLINE=1"
    if isinstance(err, (LocalEntryNotFoundError, DryRunError)):  # how huggingface_hub says "unreachable"
        return f"could not reach the hub at {endpoint or constants.ENDPOINT}; {again} once it answers"
    if isinstance(err, EntryNotFoundError):
        return f"{repo} has no config.json: it is not a model repository Sharpen can read"
    if isinstance(err, HfHubHTTPError):
        status = err.response.status_code if err.response is not None else "?"
        return f"the hub refused the download of {repo} (HTTP {status}); {again} later"
    return None


def add_parser(sub: argparse._SubParsersAction) -> None:
    """The `pull` subcommand's flags (engine.cli builds the parser)."""
    p = sub.add_parser("pull", help="download a model from the Hugging Face Hub into its cache",
                       description="Reads the model's config.json first and refuses a family Sharpen cannot "
                                   "run; then downloads only the files it needs (resumable), with a progress "
                                   "bar, and prints the memory estimate. HF_ENDPOINT and HF_HOME apply.")
    p.add_argument("repo_id", metavar="REPO_ID", help="the model's hub id, OWNER/NAME")
    p.add_argument("--revision", help="a branch, tag or commit (default: main)")
    p.add_argument("--device", help="the device the memory estimate is for (default: cuda when present)")


def command(args: argparse.Namespace, stdout: TextIO, stderr: TextIO) -> int:
    """Run `pull` from parsed flags: progress and the result on stderr, the snapshot folder on stdout."""
    before = partial_files(hub_cache(), args.repo_id)

    def interrupted(signum: int, frame: object) -> None:
        # Not KeyboardInterrupt: huggingface_hub's thread pool would wait for every file in flight to
        # finish first. Leave now: completed files stay in the cache; the files this run had begun
        # (process-unique `.incomplete` names, never reused) go.
        for path in partial_files(hub_cache(), args.repo_id) - before:
            path.unlink(missing_ok=True)
        line = explain(KeyboardInterrupt(), args.repo_id, args.revision, None)
        print(f"\nerror: {line}", file=stderr, flush=True)  # below the progress bar
        os._exit(130)

    previous = signal.signal(signal.SIGINT, interrupted)
    try:
        device = pick_device(args.device)
        pulled = pull(args.repo_id, args.revision, device=device, say=lambda line: print(line, file=stderr))
    except (PullError, ValueError, OSError) as err:
        print(f"error: {err}", file=stderr, flush=True)
        return 2
    finally:
        signal.signal(signal.SIGINT, previous)
    print(f"run it: python app.py --model {args.repo_id}", file=stderr)
    print(pulled.folder, file=stdout)
    return 0
