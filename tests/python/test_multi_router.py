"""Interchangeable router replicas: one `tokenfab worker` attached to two real
`tokenfab router` processes on loopback, by a list and by a DNS name that
resolves to both (through nss_wrapper's hosts file, so the worker's own
getaddrinfo does the resolving). Each router sees the worker, its KV events
and a role either router set, serves requests through it, and gets it back
after a restart."""
import pathlib
import shutil
import socket
import tempfile
import time

import pytest

from cluster import Cluster

NSS_WRAPPER = "/usr/lib/x86_64-linux-gnu/libnss_wrapper.so"
PROMPT = ("The river ran past the old mill where the children used to play in summer, "
          "and the miller watched them from his window every afternoon.")


def wait_until(what: str, done, timeout: float = 30, logs=lambda: "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if done():
            return
        time.sleep(0.1)
    pytest.fail(f"{what} within {timeout} s\n{logs()}")


def worker_in(router: Cluster, worker_id: str):
    return next((w for w in router.list_workers() if w.worker_id == worker_id), None)


@pytest.fixture
def routers(grpc_modules):
    made = []

    def make(*args, **kwargs):
        r = Cluster(grpc_modules, "--disagg-threshold", "0", *args, **kwargs)
        made.append(r)
        return r

    yield make
    for r in reversed(made):
        r.close()


def logs_of(*clusters) -> str:
    return "\n".join(c.logs() for c in clusters)


def test_a_worker_listed_with_two_routers_serves_both(routers):
    a = routers(name="router-a")
    b = routers(name="router-b")
    worker = a.start_worker("w", "both", router=f"{a.internal_target},{b.internal_target}",
                            wait=False)
    b.workers["w"] = worker  # b's logs show it too; a stops it
    for r in (a, b):
        wait_until("the worker attached to both routers", lambda r=r: worker_in(r, "w") is not None,
                   logs=lambda: logs_of(a, b))

    # The same greedy tokens through either router.
    via_a, final_a = a.generate(PROMPT, 12)
    via_b, final_b = b.generate(PROMPT, 12)
    assert via_a == via_b and len(via_a) == 12, (via_a, via_b)
    assert final_a.finish_reason == final_b.finish_reason == a.pb2.FINISH_REASON_LENGTH

    # Both routers' KV indexes hold the blocks the worker cached.
    wait_until("both routers index the worker's cached blocks",
               lambda: worker_in(a, "w").cached_blocks == worker_in(b, "w").cached_blocks > 0,
               logs=lambda: logs_of(a, b))

    # A role set through router a reaches router b through the worker.
    a.admin.SetWorkerRole(a.control_pb2.SetWorkerRoleRequest(
        worker_id="w", role=a.control_pb2.WORKER_ROLE_DECODE), timeout=5)
    wait_until("router b sees the role router a set",
               lambda: worker_in(b, "w").role == a.control_pb2.WORKER_ROLE_DECODE,
               timeout=5, logs=lambda: logs_of(a, b))
    assert "role is now decode" in worker.output()

    # Router b dies: a keeps serving. b comes back on its ports: the worker
    # attaches again, with its blocks and role, and b serves through it.
    b.router.kill9()
    assert a.generate(PROMPT, 4)[0] == via_a[:4]
    b.workers.clear()
    b.close()
    b2 = routers(name="router-b-restarted", ports=b.ports)
    b2.workers["w"] = worker
    wait_until("the worker attached to the restarted router", lambda: worker_in(b2, "w") is not None,
               logs=lambda: logs_of(a, b2))
    w = worker_in(b2, "w")
    assert w.role == a.control_pb2.WORKER_ROLE_DECODE and w.cached_blocks > 0, w
    assert b2.generate(PROMPT, 12)[0] == via_a
    assert worker.alive()
    a.workers.pop("w")
    b2.workers.clear()
    assert worker.stop(timeout=30) == 0, worker.output()


def free_port_on(*hosts: str) -> int:
    """A port free on every one of `hosts`."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind((hosts[0], 0))
            port = s.getsockname()[1]
            try:
                for h in hosts[1:]:
                    with socket.socket() as t:
                        t.bind((h, port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no port free on all of {hosts}")


def test_a_worker_attaches_to_every_router_a_name_resolves_to(routers):
    if not pathlib.Path(NSS_WRAPPER).exists():
        pytest.fail(f"{NSS_WRAPPER} is missing: run scripts/setup (Debian package libnss-wrapper)")
    name = "routers.tokenfab.test"
    hosts_dir = pathlib.Path(tempfile.mkdtemp(prefix="tokenfab-hosts-"))
    hosts = hosts_dir / "hosts"
    try:
        # Two router replicas on different loopback addresses, same ports, as
        # pods behind a headless Service. DNS lists only the first at start.
        ports = tuple(free_port_on("127.0.0.2", "127.0.0.3") for _ in range(4))
        hosts.write_text(f"127.0.0.2 {name}\n")
        a = routers(host="127.0.0.2", ports=ports, name="router-a")
        worker = a.start_worker("w", "both", router=f"{name}:{ports[3]}", wait=False,
                                env={"LD_PRELOAD": NSS_WRAPPER, "NSS_WRAPPER_HOSTS": str(hosts)})
        wait_until("the worker attached to the first router", lambda: worker_in(a, "w") is not None,
                   logs=lambda: a.logs())
        b = routers(host="127.0.0.3", ports=ports, name="router-b")
        b.workers["w"] = worker
        # The second replica appears in DNS: within a re-resolve (5 s) the
        # worker attaches to it as well.
        time.sleep(1)
        assert worker_in(b, "w") is None
        hosts.write_text(f"127.0.0.2 {name}\n127.0.0.3 {name}\n")
        wait_until("the worker attached to the router DNS added", lambda: worker_in(b, "w") is not None,
                   timeout=15, logs=lambda: logs_of(a, b))
        assert a.generate(PROMPT, 8)[0] == b.generate(PROMPT, 8)[0]
        assert worker_in(a, "w") is not None

        # The first replica leaves DNS: the worker detaches from it.
        hosts.write_text(f"127.0.0.3 {name}\n")
        wait_until("the worker left the router DNS dropped", lambda: worker_in(a, "w") is None,
                   timeout=15, logs=lambda: logs_of(a, b))
        assert "router 127.0.0.2:" in worker.output() and "gone from DNS" in worker.output()
        assert b.generate(PROMPT, 4)[0]
        a.workers.pop("w")
    finally:
        shutil.rmtree(hosts_dir, ignore_errors=True)


def test_a_bad_router_list_is_refused_before_the_model_loads(routers):
    a = routers()
    worker = a.start_worker("bad", "both", router=f"{a.internal_target},,x", wait=False)
    assert worker.process.wait(timeout=30) == 2, worker.output()
    assert "--router: an empty entry in the list" in worker.output()
    a.workers.pop("bad")
