"""The OpenAI-compatible HTTP face with the official `openai` SDK, against a
real `tokenfab serve` on the default model. What the SDK cannot send (invalid
UTF-8, raw bodies) goes through http.client."""
import concurrent.futures
import http.client
import json
import re
import time
import urllib.parse
import urllib.request
import uuid

import openai
import pytest

from prompts import PROMPTS


def make_client(server) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.http_url + "/v1", api_key="unused", max_retries=0, timeout=300)


@pytest.fixture(scope="module")
def client(server):
    c = make_client(server)
    yield c
    c.close()


def raw_post(server, path: str, body: bytes, timeout: float = 120):
    """POSTs bytes as they are; returns (status, headers, parsed JSON body)."""
    url = urllib.parse.urlparse(server.http_url)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=timeout)
    try:
        conn.request("POST", path, body=body, headers={"Content-Type": "application/json"})
        r = conn.getresponse()
        return r.status, dict((k.lower(), v) for k, v in r.getheaders()), json.loads(r.read())
    finally:
        conn.close()


def kv_blocks_used(server) -> float:
    with urllib.request.urlopen(server.metrics_url, timeout=5) as r:
        body = r.read().decode()
    return float(re.search(r"^tokenfab_worker_kv_blocks_used (\S+)$", body, re.M).group(1))


def stream_completion(client, model, **kwargs):
    """Streams a text completion; returns (text, chunks)."""
    chunks = list(client.completions.create(model=model, stream=True, **kwargs))
    return "".join(c.choices[0].text for c in chunks if c.choices), chunks


def stream_chat(client, model, **kwargs):
    """Streams a chat completion; returns (content, chunks)."""
    chunks = list(client.chat.completions.create(model=model, stream=True, **kwargs))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    return text, chunks


def test_health_and_models(server, client):
    with urllib.request.urlopen(server.http_url + "/health", timeout=10) as r:
        assert r.status == 200
        assert json.loads(r.read()) == {"status": "ok"}
    models = client.models.list()
    assert [m.id for m in models.data] == [server.model_id]
    assert models.data[0].object == "model"
    with pytest.raises(openai.NotFoundError):
        client.get("/no/such/path", cast_to=object)


def test_chat_non_streamed(server, client):
    r = client.chat.completions.create(
        model=server.model_id, messages=[{"role": "user", "content": "What is the capital of France?"}],
        max_tokens=16, temperature=0)
    assert r.object == "chat.completion"
    assert r.id.startswith("chatcmpl-")
    assert r.model == server.model_id
    choice = r.choices[0]
    assert choice.index == 0
    assert choice.message.role == "assistant"
    assert choice.message.content
    assert choice.finish_reason in ("stop", "length")
    assert 0 < r.usage.completion_tokens <= 16
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens


def test_chat_streamed_equals_non_streamed(server, client):
    args = dict(messages=[{"role": "system", "content": "You are brief."},
                          {"role": "user", "content": [{"type": "text", "text": "Name three "},
                                                       {"type": "text", "text": "colours."}]}],
                max_completion_tokens=20, temperature=0)
    whole = client.chat.completions.create(model=server.model_id, **args)
    text, chunks = stream_chat(client, server.model_id, stream_options={"include_usage": True}, **args)
    assert text == whole.choices[0].message.content
    assert chunks[0].object == "chat.completion.chunk"
    assert chunks[0].choices[0].delta.role == "assistant"
    assert all(c.id == chunks[0].id for c in chunks)
    assert chunks[-1].choices == []  # the usage chunk
    assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens
    assert chunks[-1].usage.prompt_tokens == whole.usage.prompt_tokens
    assert all(c.usage is None for c in chunks[:-1])
    assert chunks[-2].choices[0].finish_reason == whole.choices[0].finish_reason


def test_completion_non_streamed_and_streamed(server, client):
    args = dict(prompt="The capital of France is", max_tokens=12, temperature=0,
                extra_body={"ignore_eos": True})
    whole = client.completions.create(model=server.model_id, **args)
    assert whole.object == "text_completion"
    assert whole.id.startswith("cmpl-")
    assert whole.choices[0].finish_reason == "length"
    assert whole.usage.completion_tokens == 12
    text, chunks = stream_completion(client, server.model_id, **args)
    assert text == whole.choices[0].text
    assert chunks[-1].choices[0].finish_reason == "length"
    assert all(c.choices[0].finish_reason is None for c in chunks[:-1])


def test_token_id_prompt_and_stop_string(server, client):
    # "The capital of France is" in SmolLM2's vocabulary (see test_grpc.py).
    ids = client.completions.create(model=server.model_id, prompt=[504, 3575, 282, 4649, 314],
                                    max_tokens=8, temperature=0)
    text = client.completions.create(model=server.model_id, prompt="The capital of France is",
                                     max_tokens=8, temperature=0)
    assert ids.choices[0].text == text.choices[0].text
    words = text.choices[0].text.split()
    assert words, text
    stopped = client.completions.create(model=server.model_id, prompt="The capital of France is",
                                        max_tokens=8, temperature=0, stop=[words[0]])
    assert words[0] not in stopped.choices[0].text
    assert stopped.choices[0].finish_reason == "stop"


def test_logprobs(server, client):
    c = client.completions.create(model=server.model_id, prompt="Water boils at", max_tokens=5,
                                  temperature=0, logprobs=2, extra_body={"ignore_eos": True})
    lp = c.choices[0].logprobs
    assert len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs) == len(lp.text_offset) == 5
    assert all(v <= 0 for v in lp.token_logprobs)
    assert all(len(t) <= 2 for t in lp.top_logprobs)
    # Greedy: the chosen token is the most likely one.
    assert all(max(t.values()) == pytest.approx(v) for t, v in zip(lp.top_logprobs, lp.token_logprobs))
    chat = client.chat.completions.create(
        model=server.model_id, messages=[{"role": "user", "content": "Hi"}], max_tokens=4,
        temperature=0, logprobs=True, top_logprobs=3)
    content = chat.choices[0].logprobs.content
    assert 0 < len(content) <= 4
    for entry in content:
        assert entry.logprob <= 0
        assert len(entry.top_logprobs) == 3
        assert isinstance(entry.bytes, list)


def test_32_concurrent_streams_match_each_alone(server, client):
    requests = [dict(prompt=p, max_tokens=16, temperature=0, extra_body={"ignore_eos": True})
                for p in PROMPTS]
    alone = [client.completions.create(model=server.model_id, **r).choices[0].text for r in requests]

    def run(i):
        return stream_completion(client, server.model_id, **requests[i % len(requests)])

    with concurrent.futures.ThreadPoolExecutor(max_workers=32) as pool:
        results = list(pool.map(run, range(32)))
    for i, (text, chunks) in enumerate(results):
        assert text == alone[i % len(requests)], f"stream {i} differs from its request alone"
        assert chunks[-1].choices[0].finish_reason == "length"


def test_repeated_system_prompt_is_cached(server, client):
    system = f"[{uuid.uuid4()}] You are a meticulous assistant. " + "Answer carefully. " * 20

    def ask(question):
        return client.chat.completions.create(
            model=server.model_id, max_tokens=4, temperature=0,
            messages=[{"role": "system", "content": system}, {"role": "user", "content": question}])

    first = ask("Name a colour.")
    second = ask("Name a fruit.")
    assert second.usage.prompt_tokens_details.cached_tokens > 0
    assert second.usage.prompt_tokens_details.cached_tokens <= second.usage.prompt_tokens
    assert first.usage.prompt_tokens_details.cached_tokens < second.usage.prompt_tokens_details.cached_tokens


def context_length(server) -> int:
    with urllib.request.urlopen(server.http_url + "/v1/models", timeout=10) as r:
        return json.loads(r.read())["data"][0]["max_model_len"]


@pytest.mark.parametrize("path,fields,field", [
    ("/v1/completions", dict(prompt=""), "prompt"),
    ("/v1/completions", dict(prompt="hi", max_tokens=0), "max_tokens"),
    ("/v1/completions", dict(prompt="hi", max_tokens=100_000), "max_tokens"),
    ("/v1/completions", dict(prompt="hi", model="no-such-model"), "model"),
    ("/v1/completions", dict(prompt="hi", temperature=-1), "temperature"),
    ("/v1/completions", dict(prompt="hi", top_p=2), "top_p"),
    ("/v1/completions", dict(prompt="hi", n=2), "n"),
    ("/v1/completions", dict(prompt=["one", "two"]), "prompt"),
    ("/v1/completions", dict(prompt="hi", stop=[""]), "stop"),
    ("/v1/chat/completions", dict(messages=[]), "messages"),
    ("/v1/chat/completions", dict(messages=[{"role": "user", "content": "hi"}, {"role": "wizard", "content": "x"}]),
     "messages[1].role"),
    ("/v1/completions", dict(prompt="hi", max_tokens=-5), "max_tokens"),
    ("/v1/chat/completions", dict(messages=[{"role": "user", "content": "hi"}], max_completion_tokens=0),
     "max_completion_tokens"),
    ("/v1/chat/completions", dict(messages=[{"role": "user", "content": "hi"}], temperature="hot"),
     "temperature"),
])
def test_bad_input_is_400_naming_the_field(server, path, fields, field):
    body = {"model": server.model_id, **fields}
    status, _, reply = raw_post(server, path, json.dumps(body).encode())
    assert status == 400, reply
    error = reply["error"]
    assert error["type"] == "invalid_request_error"
    assert field in error["message"]
    assert error["param"] == field


def test_prompt_longer_than_the_context_is_400(server):
    n = context_length(server)
    status, _, reply = raw_post(server, "/v1/completions",
                                json.dumps({"model": server.model_id, "prompt": " hello" * (n + 10)}).encode())
    assert status == 400
    assert reply["error"]["param"] == "prompt"
    assert str(n) in reply["error"]["message"]


def test_invalid_utf8_is_400(server):
    body = b'{"model": "' + server.model_id.encode() + b'", "prompt": "caf\xc3 \xff"}'
    status, _, reply = raw_post(server, "/v1/completions", body)
    assert status == 400
    assert "prompt" in reply["error"]["message"]
    assert "UTF-8" in reply["error"]["message"]
    status, _, reply = raw_post(server, "/v1/completions", b'{"prompt": ')
    assert status == 400
    assert "JSON" in reply["error"]["message"]


def test_sdk_raises_bad_request(server, client):
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model=server.model_id, messages=[{"role": "user", "content": "hi"}],
                                       temperature=-1)
    assert e.value.status_code == 400
    assert "temperature" in str(e.value)


def test_client_leaving_a_stream_frees_its_blocks(server, client):
    stream = client.completions.create(model=server.model_id, prompt="Tell me a long story.",
                                       max_tokens=500, stream=True, extra_body={"ignore_eos": True})
    for i, _ in enumerate(stream):
        if i == 2:
            break
    assert kv_blocks_used(server) > 0
    stream.close()  # closes the connection mid-stream
    deadline = time.monotonic() + 30
    while kv_blocks_used(server) != 0:
        assert time.monotonic() < deadline, "KV blocks were not freed"
        time.sleep(0.1)


def test_full_queue_is_429_with_retry_after(start_server):
    s = start_server("--max-num-seqs", "1", "--max-queue", "1")
    c = make_client(s)

    def run(i):
        try:
            r = c.completions.create(model=s.model_id, prompt=f"Story {i}:", max_tokens=40,
                                     extra_body={"ignore_eos": True})
            return r.choices[0].finish_reason
        except openai.RateLimitError as e:
            assert e.status_code == 429
            assert int(e.response.headers["retry-after"]) >= 1
            return 429

    with concurrent.futures.ThreadPoolExecutor(max_workers=6) as pool:
        outcomes = list(pool.map(run, range(6)))
    c.close()
    assert 429 in outcomes
    assert outcomes.count("length") >= 1
    assert all(o in (429, "length") for o in outcomes)
