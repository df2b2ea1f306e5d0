"""The deploy lock's lease on a real engine, with runners on "other machines" (each in a UTS
namespace of its own, so its hostname differs): a killed runner's lock is taken over by the
next deploy with no manual step; a live one is never broken; of two runners taking an expired
lock at once, exactly one deploys."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time

import pytest

from tests.engine.test_deploy import (
    deploy,
    head,
    history,
    hold_lock,
    lock_held,
    make_web,
    serving,
)
from tests.support import ROOT, Stack, invoke, sh, user_dirs

pytestmark = pytest.mark.engine

# short leases keep the tests short; the semantics are the same at 60 s
FAST = {"INVOKE_STACK_LOCK_LEASE": "6", "INVOKE_STACK_LOCK_HEARTBEAT": "1"}


def elsewhere(
    stack: Stack, machine: str, *args: str, env: dict[str, str] | None = None
) -> subprocess.Popen[str]:
    """``invoke <args>`` as a runner on another machine (its own hostname), in a process
    group of its own (a CI job's), with ``env`` on top of short lock leases."""
    if shutil.which("unshare") is None or os.geteuid() != 0:
        pytest.skip("needs root and unshare for a runner with another hostname")
    full = {k: v for k, v in os.environ.items() if k != "GIT_COMMIT_HASH"}
    full.update({**user_dirs(stack.root), **FAST, **(env or {})})
    script = f'hostname {machine} && exec "$@"'
    argv = ["unshare", "--uts", "sh", "-c", script, "sh", "invoke", "-r", str(ROOT), *args]
    return subprocess.Popen(
        argv, cwd=stack.root, env=full, text=True, start_new_session=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip


@pytest.fixture
def web(stack: Stack) -> Stack:
    return make_web(stack)


def lock_name(stack: Stack) -> str:
    return f"compose-tasks-lock-{stack.name}"


def wait_for(check: object, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


def never_healthy(stack: Stack) -> None:
    (stack.root / "web/site/health").unlink()
    stack.commit("fails its health check")


def test_a_killed_runner_s_lock_is_taken_over_by_the_next_deploy(web: Stack) -> None:
    assert deploy(web).returncode == 0
    never_healthy(web)
    stuck = head(web)
    runner_a = elsewhere(web, "runner-a", "deploy", "--timeout", "120")
    wait_for(lambda: lock_held(lock_name(web)), 60)
    time.sleep(3)  # building done, waiting for health, renewing its lease
    os.killpg(runner_a.pid, signal.SIGKILL)  # the CI job is cancelled
    runner_a.wait()
    web.write("web/site/health", "ok\n")
    web.commit("fixed")
    started = time.monotonic()
    runner_b = elsewhere(web, "runner-b", "deploy", "--timeout", "60")
    _, err = runner_b.communicate(timeout=180)
    taken = time.monotonic() - started
    assert runner_b.returncode == 0, err[-3000:]
    assert "took over the deploy lock of" in err and "@runner-a" in err
    assert taken < 180
    assert serving(web) == head(web)
    interrupted = [e for e in history(web) if e["result"] == "interrupted"]
    assert [e["sha"] for e in interrupted] == [stuck[:12]]
    assert "runner-a" in interrupted[0]["detail"] and "runner-b" in interrupted[0]["detail"]
    assert not lock_held(lock_name(web))
    names = sh("docker", "ps", "-a", "--filter", f"label=com.docker.compose.project={web.name}",
               "--format", "{{.Image}}").stdout.split()  # fmt: skip
    assert names and all(name.endswith(f":{head(web)[:12]}") for name in names), names


def kill_at(runner: subprocess.Popen[str], marker: str, delay: float) -> str:
    """SIGKILL the runner's process group ``delay`` seconds after its output shows ``marker``
    (a CI job cancelled in that phase); what it said until then."""
    said: list[str] = []
    assert runner.stderr is not None
    for line in runner.stderr:  # ends when the runner does: then the marker never came
        said.append(line)
        if marker in line:
            time.sleep(delay)
            os.killpg(runner.pid, signal.SIGKILL)
            break
    runner.wait(timeout=60)
    text = "".join(said)
    assert marker in text, text[-3000:]
    return text


@pytest.mark.parametrize(
    ("phase", "marker", "delay"),
    [
        ("starting", " up -d ", 0.5),  # inside compose up: containers being replaced
        ("rolling back", "rolling back to", 0.3),  # the failed version going, the old coming
    ],
)
def test_a_deploy_killed_in_each_phase_converges_on_the_next(
    web: Stack, phase: str, marker: str, delay: float
) -> None:
    assert deploy(web).returncode == 0
    if phase == "rolling back":
        never_healthy(web)
    else:
        web.write("web/site/page", "v2\n")
        web.commit("v2")
    killed = head(web)
    runner_a = elsewhere(web, "runner-a", "deploy", "--timeout", "8")
    kill_at(runner_a, marker, delay)
    web.write("web/site/health", "ok\n")
    web.write("web/site/page", "v3\n")
    web.commit("v3")
    runner_b = elsewhere(web, "runner-b", "deploy", "--timeout", "60")
    _, err = runner_b.communicate(timeout=240)
    assert runner_b.returncode == 0, err[-3000:]
    assert "took over the deploy lock of" in err and "@runner-a" in err
    assert serving(web) == head(web)
    interrupted = [e["sha"] for e in history(web) if e["result"] == "interrupted"]
    assert interrupted == [killed[:12]]
    found = sh("docker", "ps", "-a", "--filter", f"label=com.docker.compose.project={web.name}",
               "--format", "{{.Names}} {{.Image}}").stdout.splitlines()  # fmt: skip
    assert found == [f"{web.name}-web-1 {web.name}-web:{head(web)[:12]}"], found
    assert not lock_held(lock_name(web))


def test_a_live_deploy_is_never_broken(web: Stack) -> None:
    assert deploy(web).returncode == 0
    never_healthy(web)
    runner_a = elsewhere(web, "runner-a", "deploy", "--timeout", "20")
    wait_for(lambda: lock_held(lock_name(web)), 60)
    time.sleep(14)  # over twice the lease: only its renewals keep the lock
    runner_b = elsewhere(web, "runner-b", "deploy", "--no-build", "--break-lock")
    _, err = runner_b.communicate(timeout=60)
    assert runner_b.returncode == 1
    assert "@runner-a" in err and "never breaks a live holder" in err
    _, err_a = runner_a.communicate(timeout=120)
    assert runner_a.returncode == 1 and "rolled back" in err_a  # it finished its own way
    assert not lock_held(lock_name(web))


def prunes(project: str) -> list[list[str]]:
    """What ``docker system prune -af --volumes`` does to each kind of object (and ``volume
    prune -a``, where the CLI has it), scoped by label to this project's objects and the idle
    image: the engine is shared, and a prune leaves whatever is in use whatever it matches. (The
    builder cache, the rest of a system prune, holds no deploy state.)"""
    mine = ["--filter", f"label=org.compose-tasks.project={project}"]
    every = ["-a"] if "--all" in sh("docker", "volume", "prune", "--help").stdout else []
    return [
        ["container", "prune", "-f", *mine],
        ["network", "prune", "-f", *mine],
        ["volume", "prune", "-f", *every, *mine],
        ["image", "prune", "-af", "--filter", "label=org.compose-tasks.idle=1"],
    ]


@pytest.mark.alone  # the prunes take the keepers' idle image, which every deploy uses
def test_the_lock_and_the_history_outlive_every_prune(web: Stack) -> None:
    assert deploy(web).returncode == 0
    before = [(e["action"], e["sha"], e["result"]) for e in history(web)]
    never_healthy(web)
    runner_a = elsewhere(web, "runner-a", "deploy", "--timeout", "120")
    try:
        wait_for(lambda: lock_held(lock_name(web)), 60)
        for prune in prunes(web.name):  # a cron'd prune while a deploy holds the lock
            sh("docker", *prune)
        assert lock_held(lock_name(web))
        done = deploy(web, "--no-build")
        assert done.returncode == 1 and "is locked by" in done.stderr and "@runner-a" in done.stderr
    finally:
        os.killpg(runner_a.pid, signal.SIGKILL)
        runner_a.wait()
    sh("docker", "rm", "-f", lock_name(web))  # its lease would free it; this test is not about that
    for prune in prunes(web.name):  # and with no deploy running: the history's keeper alone
        sh("docker", *prune)
    assert [(e["action"], e["sha"], e["result"]) for e in history(web)] == before
    keeper = f"compose-tasks-state-{web.name}"
    state = sh("docker", "inspect", "-f", "{{.State.Status}} {{.HostConfig.RestartPolicy.Name}}",
               keeper).stdout.split()  # fmt: skip
    assert state == ["running", "unless-stopped"]


def test_of_two_runners_taking_an_expired_lock_exactly_one_deploys(web: Stack) -> None:
    assert deploy(web).returncode == 0
    good = head(web)
    hold_lock(web, {"run": "e" * 32, "user": "ci", "machine": "gone", "since": "t", "lease": 2})
    time.sleep(3)  # its lease ran out
    runners = [
        elsewhere(web, f"runner-{n}", "deploy", "--no-build", "--sha", good[:12]) for n in "bc"
    ]
    results = [(runner.wait(timeout=120), runner.stderr.read()) for runner in runners]  # type: ignore[union-attr]
    codes = sorted(code for code, _ in results)
    assert codes == [0, 1], results
    loser = next(err for code, err in results if code)
    assert "just now" in loser or "is locked by" in loser
    assert "took over" not in loser
    assert [e["result"] for e in history(web)].count("interrupted") == 1
    assert invoke(web.root, "history").returncode == 0
