"""Commit rules on a scripted model: the spacing rule keeps one forward's commits apart."""
import torch

from engine import SamplerSettings
from engine.commit import Layout, choose_commits


def commits(settings: SamplerSettings, confidence: list[float], todo: list[bool] | None = None,
            steps_left: int = 2) -> list[int]:
    P = len(confidence)
    layout = Layout.of(((0, P),), settings.block_length, torch.device("cpu"))
    todo_t = torch.tensor([todo or [True] * P])
    conf = torch.tensor([confidence])
    chosen = choose_commits(settings, layout, todo_t, conf, torch.zeros_like(conf), 0, steps_left,
                            torch.Generator().manual_seed(0))
    return chosen[0].nonzero().squeeze(-1).tolist()


CONF = [0.5, 0.9, 0.8, 0.3, 0.7, 0.6, 0.2, 0.1]  # the best slots sit side by side


def test_without_spacing_the_most_confident_neighbours_commit_together():
    assert commits(SamplerSettings(strategy="low_confidence"), CONF, steps_left=4) == [1, 2]


def test_spacing_two_commits_the_best_slot_of_each_neighbourhood():
    settings = SamplerSettings(strategy="low_confidence", spacing=2)
    assert commits(settings, CONF, steps_left=4) == [1, 4]  # 2 and 5 sit next to better slots
    # the budget asks for four but only 1 and 4 are free: the best crowded ones fill the count
    assert commits(settings, CONF, steps_left=2) == [1, 2, 4, 5]
    spaced3 = commits(settings.replace(spacing=3), [0.9, 0.1, 0.8, 0.1, 0.1, 0.7], steps_left=3)
    assert spaced3 == [0, 5]  # 2 is two away from the better 0


def test_spacing_counts_only_undecided_neighbours_and_the_budget_still_ends_the_span():
    settings = SamplerSettings(strategy="low_confidence", spacing=2)
    # slot 2's neighbours are decided: no conflict, it commits with slot 0
    assert commits(settings, [0.9, 0.1, 0.8, 0.1], todo=[True, False, True, False], steps_left=1) == [0, 2]
    # last step: every undecided slot must go, neighbours or not
    assert commits(settings, [0.9, 0.8, 0.7], steps_left=1) == [0, 1, 2]


def test_threshold_extras_skip_crowded_slots():
    settings = SamplerSettings(strategy="threshold", threshold=0.5, spacing=2)
    # four slots reach 0.5, but 0 and 2 sit next to the better 1, and 5 next to 4
    assert commits(settings, CONF, steps_left=8) == [1, 4]
    assert commits(settings.replace(spacing=1), CONF, steps_left=8) == [0, 1, 2, 4, 5]


def commit_counts(block_length: int | None, width: int, budget: int) -> list[int]:
    """Slots committed per step when `choose_commits` runs a whole span of `width` slots."""
    settings = SamplerSettings(strategy="low_confidence", block_length=block_length)
    layout = Layout.of(((0, width),), block_length, torch.device("cpu"))
    todo = torch.ones(1, width, dtype=torch.bool)
    conf = torch.linspace(0.9, 0.1, width)[None]
    counts = []
    for step in range(budget):
        now = choose_commits(settings, layout, todo, conf, torch.zeros_like(conf), step, budget,
                             torch.Generator().manual_seed(0))
        started = (now | ~todo)[0]
        blocks = torch.arange(width) // (block_length or width)
        # semi-autoregressive: a slot of a later block only once every earlier block is decided
        assert all(bool(started[blocks < b].all()) for b in blocks[now[0]].tolist())
        counts.append(int(now.sum()))
        todo &= ~now
    assert not todo.any()
    return counts


def test_blocks_share_the_steps_and_finish_in_turn_as_llada_does():
    # LLaDA's generate.py: 6 steps over 2 blocks of 4 tokens -> 3 steps per block, 2 + 1 + 1 tokens
    assert commit_counts(4, 8, 6) == [2, 1, 1, 2, 1, 1]
    assert commit_counts(None, 8, 6) == [2, 2, 1, 1, 1, 1]
    # uneven blocks (4, 4, 2) over one step per slot: one token per forward throughout
    assert commit_counts(4, 10, 10) == [1] * 10


def test_more_blocks_than_steps_still_end_within_the_budget():
    assert commit_counts(1, 8, 3) == [3, 3, 2]
