"""The gRPC face with a client generated from our proto (grpcio), against a
real `tokenfab serve` on the default model."""
import concurrent.futures
import re
import time
import urllib.request

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from prompts import PROMPTS


@pytest.fixture(scope="module")
def stub(server, grpc_modules):
    _, pb2_grpc = grpc_modules
    channel = grpc.insecure_channel(server.grpc_target)
    yield pb2_grpc.GenerationStub(channel)
    channel.close()


def generate(stub, pb2, timeout=300, **fields):
    """Runs one Generate stream; returns (text, token ids, final response)."""
    text, ids, final = [], [], None
    for r in stub.Generate(pb2.GenerateRequest(**fields), timeout=timeout):
        text.append(r.text)
        ids.extend(r.token_ids)
        if r.finish_reason:
            final = r
    return "".join(text), ids, final


def kv_blocks_used(server) -> float:
    with urllib.request.urlopen(server.metrics_url, timeout=5) as r:
        body = r.read().decode()
    return float(re.search(r"^tokenfab_worker_kv_blocks_used (\S+)$", body, re.M).group(1))


def wait_blocks_free(server, timeout=30):
    deadline = time.monotonic() + timeout
    while kv_blocks_used(server) != 0:
        assert time.monotonic() < deadline, "KV blocks were not freed"
        time.sleep(0.1)


def test_generate_streams_text_then_finish_and_usage(stub, grpc_modules):
    pb2, _ = grpc_modules
    chunks = list(stub.Generate(pb2.GenerateRequest(prompt="The capital of France is", max_tokens=12,
                                                    stop_at_eos=False), timeout=120))
    assert len(chunks) >= 2
    assert all(c.finish_reason == pb2.FINISH_REASON_UNSPECIFIED for c in chunks[:-1])
    last = chunks[-1]
    assert last.finish_reason == pb2.FINISH_REASON_LENGTH
    assert last.usage.prompt_tokens == 5
    assert last.usage.completion_tokens == 12
    ids = [t for c in chunks for t in c.token_ids]
    assert len(ids) == 12
    # Greedy by default in the proto (temperature 0): llama.cpp starts the same way.
    assert ids[:5] == [7042, 30, 198, 198, 504]
    assert "".join(c.text for c in chunks).startswith(" Paris.")


def test_chat_uses_the_model_template(stub, grpc_modules):
    pb2, _ = grpc_modules
    chat = pb2.ChatMessages(messages=[pb2.ChatMessage(role="user", content="Say hi.")])
    text, ids, final = generate(stub, pb2, chat=chat, max_tokens=60)
    assert final.finish_reason in (pb2.FINISH_REASON_STOP, pb2.FINISH_REASON_LENGTH)
    assert text and "<|im_end|>" not in text
    assert final.usage.prompt_tokens > 30  # the default system prompt is rendered


def test_32_concurrent_streams_match_each_alone(stub, grpc_modules):
    pb2, _ = grpc_modules
    requests = [dict(prompt=p, max_tokens=24, stop_at_eos=False) for p in PROMPTS]
    alone = [generate(stub, pb2, **r)[:2] for r in requests]
    with concurrent.futures.ThreadPoolExecutor(max_workers=32) as pool:
        futures = [pool.submit(generate, stub, pb2, **requests[i % len(requests)]) for i in range(32)]
        results = [f.result() for f in futures]
    for i, (text, ids, final) in enumerate(results):
        assert (text, ids) == alone[i % len(requests)], f"stream {i} differs from its request alone"
        assert final.finish_reason == pb2.FINISH_REASON_LENGTH


def test_repeated_system_prompt_is_cached(stub, grpc_modules):
    pb2, _ = grpc_modules
    system = "You are a meticulous assistant. " * 20
    chat = pb2.ChatMessages(messages=[pb2.ChatMessage(role="system", content=system),
                                      pb2.ChatMessage(role="user", content="Name a colour.")])
    _, _, first = generate(stub, pb2, chat=chat, max_tokens=4)
    chat2 = pb2.ChatMessages(messages=[pb2.ChatMessage(role="system", content=system),
                                       pb2.ChatMessage(role="user", content="Name a fruit.")])
    _, _, second = generate(stub, pb2, chat=chat2, max_tokens=4)
    assert second.usage.cached_tokens > 0
    assert second.usage.cached_tokens <= second.usage.prompt_tokens


@pytest.mark.parametrize("fields,field_name", [
    (dict(prompt=""), "prompt"),
    (dict(prompt="hi", max_tokens=0), "max_tokens"),
    (dict(prompt="hi", max_tokens=-5), "max_tokens"),
    (dict(prompt="hi", max_tokens=10_000), "max_tokens"),
    (dict(prompt="hello " * 9000), "prompt"),
    (dict(prompt="hi", model="no-such-model"), "model"),
    (dict(prompt="hi", sampling=dict(temperature=-1)), "temperature"),
    (dict(prompt="hi", sampling=dict(top_p=2)), "top_p"),
    (dict(prompt="hi", logprobs=50), "logprobs"),
    (dict(prompt="hi", stop=[""]), "stop"),
    (dict(chat=dict(messages=[dict(role="wizard", content="hi")])), "messages[0].role"),
])
def test_bad_input_is_invalid_argument(stub, grpc_modules, fields, field_name):
    pb2, _ = grpc_modules
    with pytest.raises(grpc.RpcError) as e:
        generate(stub, pb2, timeout=60, **fields)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field_name in e.value.details()


def test_invalid_utf8_is_invalid_argument(server):
    # Python's protobuf will not put invalid UTF-8 in a string field, so the
    # request is serialized by hand: field 1 (prompt), bytes ff fe.
    channel = grpc.insecure_channel(server.grpc_target)
    call = channel.unary_stream("/tokenfab.v1.Generation/Generate",
                                request_serializer=lambda b: b, response_deserializer=lambda b: b)
    with pytest.raises(grpc.RpcError) as e:
        list(call(b"\x0a\x02\xff\xfe", timeout=30))
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "UTF-8" in e.value.details()
    channel.close()


def test_cancelled_stream_frees_its_blocks(server, stub, grpc_modules):
    pb2, _ = grpc_modules
    call = stub.Generate(pb2.GenerateRequest(prompt="Tell me a long story.", max_tokens=500,
                                             stop_at_eos=False), timeout=120)
    for i, _ in enumerate(call):
        if i == 2:
            break
    assert kv_blocks_used(server) > 0
    call.cancel()
    wait_blocks_free(server)


def test_deadline_cancels_the_request(server, stub, grpc_modules):
    pb2, _ = grpc_modules
    with pytest.raises(grpc.RpcError) as e:
        generate(stub, pb2, timeout=0.5, prompt="Count to a thousand:", max_tokens=2000, stop_at_eos=False)
    assert e.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    wait_blocks_free(server)


def test_full_queue_is_resource_exhausted_and_admitted_requests_finish(start_server, grpc_modules):
    pb2, pb2_grpc = grpc_modules
    s = start_server("--max-num-seqs", "1", "--max-queue", "1")
    channel = grpc.insecure_channel(s.grpc_target)
    stub = pb2_grpc.GenerationStub(channel)
    with concurrent.futures.ThreadPoolExecutor(max_workers=6) as pool:
        futures = [pool.submit(generate, stub, pb2, prompt=f"Story {i}:", max_tokens=40, stop_at_eos=False)
                   for i in range(6)]
        outcomes = []
        for f in futures:
            try:
                outcomes.append(f.result()[2].finish_reason)
            except grpc.RpcError as e:
                outcomes.append(e.code())
    assert grpc.StatusCode.RESOURCE_EXHAUSTED in outcomes
    assert outcomes.count(pb2.FINISH_REASON_LENGTH) >= 1
    assert all(o in (grpc.StatusCode.RESOURCE_EXHAUSTED, pb2.FINISH_REASON_LENGTH) for o in outcomes)
    channel.close()


def test_tokenize_and_list_models(server, stub, grpc_modules):
    pb2, _ = grpc_modules
    assert list(stub.Tokenize(pb2.TokenizeRequest(text="The capital of France is")).token_ids) == \
        [504, 3575, 282, 4649, 314]
    models = stub.ListModels(pb2.ListModelsRequest()).models
    assert [m.id for m in models] == [server.model_id]
    assert models[0].context_length == 8192


def test_health_and_reflection(server):
    channel = grpc.insecure_channel(server.grpc_target)
    health = health_pb2_grpc.HealthStub(channel)
    assert health.Check(health_pb2.HealthCheckRequest(service=""), timeout=10).status == \
        health_pb2.HealthCheckResponse.SERVING
    reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
    responses = reflection.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]),
                                                timeout=10)
    services = [s.name for r in responses for s in r.list_services_response.service]
    assert "tokenfab.v1.Generation" in services
    assert "grpc.health.v1.Health" in services
    channel.close()
