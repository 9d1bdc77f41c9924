"""Remembered causal reads: a read that begins like one before runs only its new rows, and gives what
a read from nothing gives; the scorer's windows around one span and the guide's read of the text
before it (the trials of an "auto" length) share those rows."""
import pytest
import torch
import torch.nn.functional as F

from engine.canvas import Span, build_canvas
from engine.families.causal import REMEMBERED_READS, CausalReader, LlamaCausalView
from engine.families.score import LlamaFluency
from engine.guide import CLOSING_CHOICES, CLOSING_TOKENS
from engine.infill import infill
from engine.loop import run
from engine.settings import SamplerSettings
from tests.tiny import tiny_llama

TEXT = "The quick brown fox jumps over the lazy dog. It was the best of times."


class Counted:
    """Wraps a reader to count the rows it runs through the blocks (`rows`; `reads`: with the batch
    size) and through the 49k-wide head (`heads`)."""

    def __init__(self, reader: CausalReader):
        self.rows, self.reads, self.heads = [], [], []
        hidden, project = reader.hidden, reader.project

        def counting(ids, past):
            self.rows.append(ids.shape[1])
            self.reads.append(tuple(ids.shape))
            return hidden(ids, past)

        def projecting(h):
            self.heads.append(h.numel() // h.shape[-1])
            return project(h)
        reader.hidden, reader.project = counting, projecting  # type: ignore[method-assign]


def plain_nll(model, ids: torch.Tensor) -> torch.Tensor:
    """(N,) -> (N - 1,) each next id's NLL from one causal forward of the net, no cache."""
    logits = model.net(ids[None], causal=True)[0]
    return F.cross_entropy(logits[:-1], ids[1:], reduction="none")


@pytest.fixture(scope="module")
def model():
    return tiny_llama(True, True)


def test_a_read_that_begins_like_a_remembered_one_runs_only_its_new_rows(model):
    reader = CausalReader(model.net)
    counted = Counted(reader)
    g = torch.Generator().manual_seed(0)
    first = torch.randint(3, model.vocab_size, (30,), generator=g)
    second = torch.cat([first[:20], torch.randint(3, model.vocab_size, (12,), generator=g)])
    reader.read(first, scored=True)
    got = reader.read(second, scored=True)
    assert counted.rows == [30, 12]  # the second read's 12 new rows
    assert counted.heads == [29, 12]  # the last shared row's next id differs: scored again
    assert torch.allclose(got.nll, plain_nll(model, second), atol=1e-5)
    fresh = CausalReader(model.net).read(second)
    assert all(torch.allclose(a, b, atol=1e-5) for (a, _), (b, _) in zip(got.past, fresh.past))


def test_a_read_inside_a_remembered_one_runs_nothing(model):
    reader = CausalReader(model.net)
    ids = torch.randint(3, model.vocab_size, (25,), generator=torch.Generator().manual_seed(1))
    reader.read(ids)  # unscored, as the guide reads: no row through the head
    counted = Counted(reader)
    got = reader.read(ids[:16], scored=True)
    assert counted.rows == [] and counted.heads == [15] and got.past[0][0].shape[2] == 16
    assert torch.allclose(got.nll, plain_nll(model, ids[:16]), atol=1e-5)
    assert torch.equal(reader.read(ids[:12], scored=True).nll, got.nll[:11]) and counted.heads == [15]


def test_only_the_latest_reads_are_remembered_and_a_longer_one_replaces_its_beginning(model):
    reader = CausalReader(model.net)
    g = torch.Generator().manual_seed(2)
    reads = [torch.randint(3, model.vocab_size, (8,), generator=g) for _ in range(REMEMBERED_READS + 1)]
    for ids in reads:
        reader.read(ids)
    assert tuple(reads[0].tolist()) not in reader.remembered.reads  # the oldest went
    longer = torch.cat([reads[-1], reads[0]])
    reader.read(longer)
    assert tuple(reads[-1].tolist()) not in reader.remembered.reads  # held by the longer read
    assert list(reader.remembered.reads)[-1] == tuple(longer.tolist())


def test_the_scorers_windows_around_one_span_read_the_text_before_it_once(model):
    """The trials of an "auto" length and the original: windows that differ only from the span on."""
    fluency = LlamaFluency(model)
    counted = Counted(fluency.reader)
    start, end = TEXT.index("lazy"), TEXT.index("lazy") + 4
    documents = [TEXT, TEXT[:start] + "sleepy old" + TEXT[end:], TEXT[:start] + "red" + TEXT[end:]]
    scores = [fluency.window_nll(d, start, start + len(d) - len(TEXT) + 4) for d in documents]
    rows = [1 + len(model.codec.encode(d)) for d in documents]  # the start row, then the window (all of it)
    before = len(model.codec.encode(TEXT[:start]))  # its last token may merge with the span's first
    assert counted.rows[0] == rows[0] and all(n <= r - before for n, r in zip(counted.rows[1:], rows[1:]))
    for document, score in zip(documents, scores):
        ids = torch.tensor([model.start_id, *model.codec.encode(document)])
        assert score == pytest.approx(plain_nll(model, ids).mean().item(), rel=1e-5)


def test_trials_that_share_the_text_before_the_span_read_it_once_and_write_the_same():
    """The guide's read of the text before the span: one trial reads it, the others (each its own
    run, as "auto" runs them) take it from the view; every trial writes what it writes alone."""
    model = tiny_llama(True, True)
    settings = SamplerSettings(strategy="low_confidence", guide=1.0, candidates=2, seed=3)
    start = TEXT.index("over")
    canvases = [build_canvas(model.codec, TEXT, [Span(start, start + 4, n)], model.max_length) for n in (2, 3, 5)]

    def written(view: LlamaCausalView, canvas) -> list[str]:
        model.causal_view = lambda: view  # type: ignore[method-assign]
        return run(infill(model, canvas, settings)).texts

    alone = [written(LlamaCausalView(model.net, model.start_id), canvas) for canvas in canvases]
    shared = LlamaCausalView(model.net, model.start_id)
    counted = Counted(shared)
    assert [written(shared, canvas) for canvas in canvases] == alone
    (before,) = shared.remembered.reads  # the start row, the frame and the text before the span
    assert len(before) > 2 and counted.reads.count((1, len(before))) == 1  # read by the first trial only
    assert len(before) not in counted.heads  # and not through the head: the guide needs no NLL of them
    closings = [rows for batch, rows in counted.reads if batch == CLOSING_CHOICES]
    assert closings and max(closings) == CLOSING_TOKENS  # each choice, then the tokens after but the last
