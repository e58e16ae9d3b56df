"""TLS on the public faces (server/tls.h) of a real `tokenfab serve`: the
`openai` SDK over HTTPS and grpcio over TLS, both trusting a test CA made
here with the openssl command; plain and untrusting clients refused;
`tokenfab complete` and `tokenfab bench` over TLS; a renewed certificate
served to new connections on both ports while the process runs; bad files
refused at start."""
import http.client
import json
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request

import grpc
import openai
import pytest

from conftest import Server, binary, free_port


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_ca(d):
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=tokenfab test CA",
            cwd=d)
    return d / "ca.pem"


def make_server_cert(d, name):
    """A key and a certificate for localhost and 127.0.0.1, signed by the CA in `d`."""
    (d / "san.ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}", cwd=d)
    openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-days", "2", "-extfile", "san.ext", "-out", f"{name}.pem", cwd=d)
    return d / f"{name}.pem", d / f"{name}.key"


def served_certificate(port, alpn=None):
    """The DER certificate a TLS server on 127.0.0.1:`port` presents (not verified)."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if alpn:
        ctx.set_alpn_protocols(alpn)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as s:
            return s.getpeercert(binary_form=True)


def der(pem_path):
    return ssl.PEM_cert_to_DER_cert(pem_path.read_text())


def wait_until(check, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.1)
    return check()


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    d = tmp_path_factory.mktemp("pki")
    ca = make_ca(d)
    a = make_server_cert(d, "server-a")
    b = make_server_cert(d, "server-b")
    # The files the server reads: a copy, rewritten in place to renew.
    live = d / "live"
    live.mkdir()
    (live / "tls.crt").write_bytes(a[0].read_bytes())
    (live / "tls.key").write_bytes(a[1].read_bytes())
    return {"dir": d, "ca": ca, "a": a, "b": b, "cert": live / "tls.crt", "key": live / "tls.key"}


@pytest.fixture(scope="module")
def tls_server(pki):
    s = Server("--tls-cert-file", str(pki["cert"]), "--tls-key-file", str(pki["key"]),
               ca_file=str(pki["ca"]))
    yield s
    code = s.stop()
    assert code == 0, f"tokenfab serve exited with {code}:\n{s.output()}"


def test_openai_sdk_and_grpcio_over_tls_get_what_plain_clients_get(server, tls_server, pki,
                                                                   grpc_modules):
    pb2, pb2_grpc = grpc_modules
    outputs = []
    for s, http_client in ((server, None),
                           (tls_server, openai.DefaultHttpxClient(
                               verify=ssl.create_default_context(cafile=str(pki["ca"]))))):
        client = openai.OpenAI(base_url=s.http_url + "/v1", api_key="none", max_retries=0,
                               http_client=http_client)
        chat = client.chat.completions.create(model=s.model_id, max_tokens=12, temperature=0,
                                              messages=[{"role": "user", "content": "Name a colour."}])
        streamed = "".join(c.choices[0].text for c in client.completions.create(
            model=s.model_id, prompt="The capital of France is", max_tokens=12, temperature=0,
            stream=True) if c.choices)
        outputs.append((chat.choices[0].message.content, streamed))
    assert tls_server.http_url.startswith("https://")
    assert outputs[0] == outputs[1], "greedy output differs over TLS"

    creds = grpc.ssl_channel_credentials(root_certificates=pki["ca"].read_bytes())
    with grpc.secure_channel(f"localhost:{tls_server.grpc_port}", creds) as ch:
        req = pb2.GenerateRequest(prompt="The capital of France is", max_tokens=12,
                                  sampling=pb2.SamplingParams(temperature=0))
        text = "".join(r.text for r in pb2_grpc.GenerationStub(ch).Generate(req, timeout=60))
    assert text == outputs[0][1]


def test_plain_and_untrusting_clients_are_refused_and_the_server_goes_on(tls_server, pki,
                                                                        grpc_modules):
    pb2, pb2_grpc = grpc_modules
    # Plain HTTP on the HTTPS port: the connection is closed, nothing answered.
    conn = http.client.HTTPConnection("127.0.0.1", tls_server.http_port, timeout=15)
    with pytest.raises((http.client.RemoteDisconnected, ConnectionResetError)):
        conn.request("GET", "/health")
        conn.getresponse()
    conn.close()
    # A TLS client that does not trust the test CA.
    with pytest.raises(urllib.error.URLError) as untrusted:
        urllib.request.urlopen(tls_server.http_url + "/health", timeout=10,
                               context=ssl.create_default_context())
    assert isinstance(untrusted.value.reason, ssl.SSLCertVerificationError), untrusted.value
    # Plain gRPC on the TLS port.
    with grpc.insecure_channel(f"127.0.0.1:{tls_server.grpc_port}") as ch:
        with pytest.raises(grpc.RpcError) as e:
            list(pb2_grpc.GenerationStub(ch).Generate(pb2.GenerateRequest(prompt="x", max_tokens=1),
                                                      timeout=10))
    assert e.value.code() == grpc.StatusCode.UNAVAILABLE
    # A client that stalls mid-handshake is dropped (10 s), without holding up others.
    stalled = socket.create_connection(("127.0.0.1", tls_server.http_port), timeout=20)
    stalled.sendall(b"\x16\x03\x01")  # the start of a ClientHello, then nothing
    with urllib.request.urlopen(tls_server.http_url + "/health", timeout=10,
                                context=tls_server.ssl_context) as r:
        assert r.status == 200
    t0 = time.monotonic()
    assert stalled.recv(1) == b""
    assert time.monotonic() - t0 < 15
    stalled.close()
    # The probes' paths over HTTPS (Kubernetes cannot probe gRPC over TLS).
    for path in ("/health", "/live"):
        with urllib.request.urlopen(tls_server.http_url + path, timeout=10,
                                    context=tls_server.ssl_context) as r:
            assert r.status == 200 and json.loads(r.read())["status"] == "ok"
    # Metrics stay plain HTTP for Prometheus.
    with urllib.request.urlopen(tls_server.metrics_url, timeout=10) as r:
        assert b"tokenfab_power_watts" in r.read()


def test_tokenfab_complete_and_bench_speak_tls(tls_server, pki):
    ca = str(pki["ca"])
    # 127.0.0.1, not localhost: the certificate names both, and resolving
    # "localhost" through gRPC's c-ares leaks 10 bytes in libcares, which
    # fails this under LeakSanitizer (README, Tests).
    out = subprocess.run([binary(), "complete", "--server", f"127.0.0.1:{tls_server.grpc_port}",
                          "--prompt", "Hello", "--max-tokens", "4", "--tls-ca-file", ca],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "completion 4 tokens" in out.stderr
    refused = subprocess.run([binary(), "complete", "--server", f"127.0.0.1:{tls_server.grpc_port}",
                              "--prompt", "Hello", "--max-tokens", "4", "--timeout", "5"],
                             capture_output=True, text=True, timeout=120)
    assert refused.returncode != 0
    for target in (f"https://127.0.0.1:{tls_server.http_port}",
                   f"grpcs://127.0.0.1:{tls_server.grpc_port}"):
        run = subprocess.run([binary(), "bench", "--target", target, "--tls-ca-file", ca,
                              "--isl", "16", "--osl", "4", "--requests", "3", "--metrics", "none",
                              "--json"], capture_output=True, text=True, timeout=300)
        assert run.returncode == 0, run.stderr
        results = json.loads(run.stdout)["results"]
        assert results["requests_completed"] == 3 and results["requests_failed"] == 0, results
        assert results["total_output_tokens"] == 12, results
    # Without the CA, the handshake fails before any request.
    run = subprocess.run([binary(), "bench", "--target", f"https://127.0.0.1:{tls_server.http_port}",
                          "--isl", "16", "--osl", "4", "--requests", "1", "--metrics", "none"],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode != 0 and "certificate verify failed" in run.stderr, run.stderr


def test_a_renewed_certificate_serves_new_connections_on_both_ports(tls_server, pki):
    a_der, b_der = der(pki["a"][0]), der(pki["b"][0])
    assert served_certificate(tls_server.http_port) == a_der
    assert served_certificate(tls_server.grpc_port, ["h2"]) == a_der
    # Renewed in place, key first: in between, the files do not match and
    # the pair in force stays.
    pki["key"].write_bytes(pki["b"][1].read_bytes())
    pki["cert"].write_bytes(pki["b"][0].read_bytes())
    assert wait_until(lambda: served_certificate(tls_server.http_port) == b_der, 10), \
        tls_server.output()
    assert wait_until(lambda: served_certificate(tls_server.grpc_port, ["h2"]) == b_der, 10)
    assert "reloaded: subject /CN=server-b" in tls_server.output()
    with urllib.request.urlopen(tls_server.http_url + "/health", timeout=10,
                                context=tls_server.ssl_context) as r:
        assert r.status == 200
    # A broken renewal is refused once and the last good pair goes on.
    pki["cert"].write_text("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    assert wait_until(lambda: "the old certificate stays" in tls_server.output(), 10), \
        tls_server.output()
    assert served_certificate(tls_server.http_port) == b_der
    assert served_certificate(tls_server.grpc_port, ["h2"]) == b_der
    pki["cert"].write_bytes(pki["b"][0].read_bytes())


@pytest.mark.parametrize("case", ["cert without key", "key of another certificate",
                                  "missing file", "not PEM"])
def test_bad_tls_files_stop_the_start_with_the_reason(pki, case):
    a_cert, a_key = (str(p) for p in pki["a"])
    b_key = str(pki["b"][1])
    args, reason = {
        "cert without key": (["--tls-cert-file", a_cert], "go together"),
        "key of another certificate": (["--tls-cert-file", a_cert, "--tls-key-file", b_key],
                                       "is not the key of the certificate"),
        "missing file": (["--tls-cert-file", a_cert, "--tls-key-file", a_key + ".gone"],
                         "--tls-key-file"),
        "not PEM": (["--tls-cert-file", a_key, "--tls-key-file", a_key],
                    "no PEM certificate chain"),
    }[case]
    out = subprocess.run([binary(), "serve", "--host", "127.0.0.1", "--grpc-port", str(free_port()),
                          "--http-port", str(free_port()), "--metrics-port", str(free_port()),
                          *args], capture_output=True, text=True, timeout=120)
    assert out.returncode == 2, out.stderr
    assert reason in out.stderr, out.stderr
