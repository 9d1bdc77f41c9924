"""OpenAI's completions shape, through the official client: the middle between prompt and suffix,
plain and streamed, as /v1/edits would fill the same empty span."""
import httpx
import pytest
from openai import BadRequestError, OpenAI

from engine.serve.completions import Prefix, cut_at_stop

PROMPT, SUFFIX = "def add(a, b):\n    return ", "\n\nfor i in range(10):\n    print(i)\n"


@pytest.fixture(scope="module")
def client(url):
    with OpenAI(base_url=f"{url}/v1", api_key="unused") as client:
        yield client


def edit_middle(url, max_tokens, **settings):
    """The same fill as an edit: an empty span of max_tokens tokens between prompt and suffix."""
    at = len(PROMPT)
    body = {"text": PROMPT + SUFFIX, "spans": [[at, at, max_tokens]], **settings}
    result = httpx.post(f"{url}/v1/edits", json=body, timeout=60).json()
    (start, end), = result["spans"]
    assert result["text"][:start] == PROMPT and result["text"][end:] == SUFFIX
    return result["text"][start:end]


def test_a_completion_fills_the_middle_as_an_edit_would(client, url, model):
    done = client.completions.create(model="any", prompt=PROMPT, suffix=SUFFIX, max_tokens=6, seed=4,
                                     temperature=0.7)
    choice, = done.choices
    assert choice.text == edit_middle(url, 6, seed=4, temperature=0.7)
    assert choice.finish_reason in ("stop", "length") and done.object == "text_completion"
    assert done.model == model.label and 1 <= done.usage.completion_tokens <= 6
    assert done.usage.total_tokens == done.usage.prompt_tokens + done.usage.completion_tokens


def test_a_streamed_completion_adds_up_to_the_plain_one(client):
    plain = client.completions.create(model="any", prompt=PROMPT, suffix=SUFFIX, max_tokens=12, seed=2,
                                      extra_body={"strategy": "low_confidence", "cache": "none"})
    chunks = list(client.completions.create(model="any", prompt=PROMPT, suffix=SUFFIX, max_tokens=12, seed=2,
                                            stream=True, extra_body={"strategy": "low_confidence", "cache": "none"}))
    assert "".join(c.choices[0].text for c in chunks) == plain.choices[0].text
    assert [c.choices[0].finish_reason for c in chunks][-1] == plain.choices[0].finish_reason
    assert all(c.choices[0].finish_reason is None for c in chunks[:-1]) and len({c.id for c in chunks}) == 1


def test_n_candidates_and_stop_sequences(client):
    done = client.completions.create(model="any", prompt=PROMPT, suffix=SUFFIX, max_tokens=8, n=3,
                                     temperature=1.0, seed=1, stop=["\n"])
    assert sorted(c.index for c in done.choices) == [0, 1, 2]
    assert all("\n" not in c.text for c in done.choices)


@pytest.mark.parametrize("kwargs, message", [
    ({"prompt": ["a", "b"]}, '"prompt" must be one string'),
    ({"prompt": "", "suffix": ""}, "prompt and suffix are both empty"),
    ({"prompt": PROMPT, "max_tokens": 0}, '"max_tokens" must be a whole number from 1 to 32,768'),
    ({"prompt": PROMPT, "max_tokens": 5000}, "the spans ask for 5,000 tokens; the model's context is 1,024 tokens"),
    ({"prompt": PROMPT, "n": 100}, '"n" must be a whole number from 1 to 64'),
    ({"prompt": PROMPT, "logprobs": 2}, '"logprobs" is not supported'),
    ({"prompt": PROMPT, "echo": True}, '"echo" is not supported'),
    ({"prompt": PROMPT, "temperature": -1}, "temperature must be a finite number from 0 to 100"),
    ({"prompt": PROMPT, "extra_body": {"text": "x"}}, "unknown field(s) text"),
])
def test_bad_completions_are_400_with_a_message(client, kwargs, message):
    with pytest.raises(BadRequestError) as refused:
        client.completions.create(model="any", **kwargs)
    assert message in refused.value.response.json()["error"]


def test_a_streamed_prefix_holds_back_what_the_next_token_may_change():
    prefix = Prefix(stop=(), steady=True)
    assert prefix.feed("x = ░░", done=False) == "x ="        # the space may join the next token
    assert prefix.feed("x = 1░", done=False) == " 1"
    assert prefix.feed("x = 1\n", done=True) == "\n"
    assert prefix.sent == "x = 1\n"


def test_a_streamed_prefix_ends_at_a_stop_sequence_and_waits_when_commits_can_be_taken_back():
    stopped = Prefix(stop=("\n",), steady=True)
    assert stopped.feed("a\nb░", done=False) == "a" and stopped.stopped
    assert stopped.feed("a\nbc", done=True) == ""
    unsteady = Prefix(stop=(), steady=False)  # remask_below: a committed token may be undone
    assert unsteady.feed("ab░", done=False) == "" and unsteady.feed("ac", done=True) == "ac"
    assert cut_at_stop("a;b.c", (".", ";")) == ("a", True) and cut_at_stop("abc", ("x",)) == ("abc", False)
