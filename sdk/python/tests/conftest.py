"""Fixtures of the pmesh Python SDK tests: real pmeshd agents on this machine,
each started by a test and stopped by its PID in a finalizer (also when the
test fails). $PMESH_BIN is the directory of pmeshd (default build/bin of
the repository)."""

import os
import random
import signal
import socket as socketlib
import subprocess
import threading
import time

import pytest

import pmesh

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
BIN = os.environ.get("PMESH_BIN") or os.path.join(REPO, os.environ.get("BUILD", "build"), "bin")
PMESHD = os.path.join(BIN, "pmeshd")


def wait_until(cond, timeout=10.0, what="condition"):
    """Polls cond() until it is truthy; fails the test if it never is."""
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for " + what)
        time.sleep(0.02)


class Agent:
    """One pmeshd: start(), stop() (SIGTERM, then SIGKILL), kill() (SIGKILL),
    restart() with the same command line (same socket, same data dir)."""

    def __init__(self, tmp, name, args=()):
        self.dir = str(tmp)
        self.name = name
        self.sock = os.path.join(self.dir, name + ".sock")
        self.log = os.path.join(self.dir, name + ".log")
        self.args = [PMESHD, "--node", name, "--socket", self.sock] + list(args)
        self.proc = None

    def start(self, wait=True):
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(self.args, stdin=subprocess.DEVNULL,
                                         stdout=subprocess.DEVNULL, stderr=log)
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout=10.0):
        def up():
            if self.proc.poll() is not None:
                raise AssertionError("pmeshd %s exited with %s:\n%s"
                                     % (self.name, self.proc.returncode, self.log_tail()))
            try:
                with pmesh.Client(self.sock) as c:
                    c.status()
                return True
            except pmesh.Unreachable:
                return False
        wait_until(up, timeout, "agent %s to answer" % self.name)

    @property
    def pid(self):
        return self.proc.pid

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def kill(self):
        if self.alive():
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def terminate(self):
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)

    def stop(self):
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.send_signal(signal.SIGKILL)
                self.proc.wait(5)

    def restart(self):
        self.stop()
        return self.start()

    def log_tail(self, n=20):
        try:
            with open(self.log, errors="replace") as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return ""

    def status(self):
        with pmesh.Client(self.sock) as c:
            return c.status()


@pytest.fixture
def start_agent(tmp_path, request):
    """start_agent(name="a1", *pmeshd flags) -> a running Agent, stopped by
    PID when the test ends."""
    agents = []

    def stop_all():
        for a in agents:
            a.stop()
    request.addfinalizer(stop_all)

    def start(name="a1", *args, wait=True):
        a = Agent(tmp_path, name, args)
        agents.append(a)
        return a.start(wait)
    return start


@pytest.fixture
def agent(start_agent):
    return start_agent("a1")


@pytest.fixture
def client(agent):
    c = pmesh.Client(agent.sock)
    yield c
    c.close()


@pytest.fixture
def run_worker(request):
    """run_worker(worker) runs a (blocking) pmesh.Worker in a thread until
    the test ends, and waits until it serves."""
    running = []

    def stop_all():
        for w, t in running:
            w.stop()
            t.join(10)
    request.addfinalizer(stop_all)

    def run(w, wait=True):
        t = threading.Thread(target=w.run, daemon=True)
        t.start()
        running.append((w, t))
        if wait:
            wait_until(lambda: w.sessions >= 1, 10, "the worker to register")
        return t
    return run


def free_port():
    for _ in range(50):
        p = random.randint(20000, 60000)
        ok = True
        for k in (1, 2, 3):
            s = socketlib.socket()
            try:
                s.setsockopt(socketlib.SOL_SOCKET, socketlib.SO_REUSEADDR, 1)
                s.bind(("127.0.0.%d" % k, p))
            except OSError:
                ok = False
            finally:
                s.close()
        if ok:
            return p
    return random.randint(20000, 60000)


@pytest.fixture
def mesh3(tmp_path, request):
    """Three agents n1..n3 on 127.0.0.1-3 (plain text: --insecure; fate-sharing:
    --replicas 1), each seeing the three alive."""
    agents = []

    def stop_all():
        for a in agents:
            a.stop()
    request.addfinalizer(stop_all)
    port = free_port()
    seed = "tcp://127.0.0.1:%d" % port
    for k in (1, 2, 3):
        ep = "tcp://127.0.0.%d:%d" % (k, port)
        a = Agent(tmp_path, "n%d" % k, ["--bind", ep, "--seed", seed, "--insecure",
                                         "--replicas", "1", "--probe-interval", "100ms",
                                         "--probe-timeout", "40ms"])
        agents.append(a)
        a.start()

    def all_alive():
        for a in agents:
            st = a.status()
            if st.get("mesh", {}).get("members", {}).get("alive") != 3:
                return False
        return True
    wait_until(all_alive, 20, "three members alive on every agent")
    return agents
