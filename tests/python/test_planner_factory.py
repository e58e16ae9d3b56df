"""The planner on a simulated 64-worker factory (real router, 64 real
`tokenfab worker --backend sim` processes, `tokenfab bench` over HTTP):
after the arrival rate doubles, the recommendation settles within three
planner intervals and stays there (within the noise of Poisson arrivals
counted over one interval), at least 90% of the requests that start once the fleet
has flipped meet both latency targets, and no request is lost or cut
short. The experiment itself lives in bench/factory_sim.py, which prints
the same figures for the README."""
import json
import pathlib
import sys
import urllib.request

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "bench"))
import factory_sim  # noqa: E402


def test_load_step_on_64_sim_workers_settles_and_meets_the_targets():
    r = factory_sim.run_step(workers=64, rate=6, warmup_s=30, after_s=45, interval_s=3)
    report = "\n" + factory_sim.format_step(r)
    assert r["lost"] == 0, report
    assert r["router_totals"]["failed"] == 0 and r["router_totals"]["refused"] == 0, report
    assert r["router_totals"]["completed"] == r["requests"], report
    assert r["intervals_to_settle"] <= 3, report
    assert r["in_band_share"] >= 0.8, report
    # The doubled load needs more workers than the first, and the planner
    # moved workers out of standby and flipped roles to get them.
    before = [s for s in r["steps"] if s[1] < 0 and s[2] + s[3] > 2]
    assert before, report
    assert sum(r["final_decision"]) > before[-1][2] + before[-1][3], report
    assert r["role_changes"] > 0 and r["standby_changes"] > 0, report
    assert r["requests_after_settle"] >= 200, report
    assert r["sla_after_settle"] >= 0.9, report


def test_simulated_workers_say_so_in_every_metric():
    factory = factory_sim.Factory(2, ["--disagg-threshold", "64"], roles=["prefill", "decode"],
                                  worker_args=["--metrics-port", "0"])
    try:
        bench = factory.bench(2, 6, 256, 16, 3.0, 0.1)
        summary, records = bench.result()
        assert all(r["ok"] and r["output_tokens"] == 16 for r in records)
        logs = "\n".join(w.output() for w in factory.workers)
        assert "(backend=sim)" in logs and "power source sim" in logs
        assert "backend=sim" in factory.router.output()
        for w in factory.workers:
            port = None
            for line in w.output().splitlines():
                if "metrics on port" in line:
                    port = int(line.rsplit("metrics on port", 1)[1].split()[0])
            assert port is not None, w.output()
            body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics").read().decode()
            samples = [l for l in body.splitlines() if l.startswith("tokenfab_")]
            assert samples and all('backend="sim"' in l for l in samples), samples[:5]
    finally:
        factory.close()


def test_router_posts_signed_decisions_to_its_webhook(tmp_path):
    """--planner-webhook: each new decision is POSTed as JSON with an
    HMAC-SHA256 signature over timestamp "." body, verifiable by a receiver
    that knows the secret; GET /v1/planner serves the same decision."""
    import hashlib
    import hmac
    import http.server
    import threading

    received = []

    class Receiver(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append((dict(self.headers), body))
            self.send_response(200 if len(received) > 1 else 503)  # the first attempt fails
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    secret = tmp_path / "secret"
    secret.write_text("s3cret-key\n")
    factory = factory_sim.Factory(2, [
        "--planner-profile", str(factory_sim.PROFILE), "--planner-interval", "200ms",
        "--planner-webhook", f"http://127.0.0.1:{server.server_address[1]}/hook",
        "--planner-webhook-secret-file", str(secret)])
    try:
        deadline = __import__("time").monotonic() + 30
        while len(received) < 2 and __import__("time").monotonic() < deadline:
            __import__("time").sleep(0.1)
        assert len(received) >= 2, factory.router.output()
        (h1, b1), (h2, b2) = received[0], received[1]
        assert b1 == b2 and h1["X-Tokenfab-Delivery"] == h2["X-Tokenfab-Delivery"]  # a retry
        expected = hmac.new(b"s3cret-key", h2["X-Tokenfab-Timestamp"].encode() + b"." + b2,
                            hashlib.sha256).hexdigest()
        assert h2["X-Tokenfab-Signature"] == f"sha256={expected}"
        decision = json.loads(b2)
        assert decision["prefill_workers"] == 1 and decision["decode_workers"] == 1
        assert decision["mode"] == "disaggregated"
        doc = factory.planner()
        assert doc["decision"]["prefill_workers"] == 1
        assert doc["targets"] == {"ttft_seconds": 2.0, "itl_seconds": 0.1}
        metrics = urllib.request.urlopen(
            f"http://127.0.0.1:{factory.metrics_port}/metrics").read().decode()
        assert 'tokenfab_planner_desired_workers{role="prefill"} 1' in metrics
        assert 'tokenfab_planner_webhook_total{outcome="delivered"} 1' in metrics
    finally:
        factory.close()
        server.shutdown()
