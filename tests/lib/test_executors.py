"llmops_nb.executors: the same results in input order in-process, in a process pool and on Ray Data; setup once per worker."
import os, sys, uuid
import pytest
from llmops_nb.data import Document
from llmops_nb.executors import (LocalExecutor, ProcessExecutor, RayExecutor, WorkerError, get_executor)

ITEMS = [Document(f"d{i}", "x" * (i % 7), {"pages": [1, i], "meta": {"k": None if i % 3 else "v"}}) for i in range(57)]


def describe(doc):
    "What an item becomes: something built from every field, so a mangled item shows."
    return (doc.id, len(doc.text), doc.metadata)


def worker_token():
    "A setup: a fresh token and the process it was made in."
    return (uuid.uuid4().hex, os.getpid())


def with_token(state, item):
    return state, os.getpid(), item


def fail_on_seven(x):
    if x == 7:
        raise ValueError("seven is not allowed")
    return x


def broken_setup():
    raise RuntimeError("no model here")


@pytest.fixture(scope="module")
def ray_executor():
    with RayExecutor(2) as ex:
        yield ex


def check_executor(ex, workers):
    assert ex.map(describe, ITEMS) == [describe(d) for d in ITEMS]           # order and nested metadata intact
    out = ex.map(with_token, range(40), setup=worker_token)
    assert [x for _, _, x in out] == list(range(40))
    tokens = {tok for tok, _, _ in out}
    assert 1 <= len(tokens) <= workers
    for tok, pid_made in tokens:
        assert {pid for state, pid, _ in out if state[0] == tok} == {pid_made}  # one state per worker, made there
    with pytest.raises(WorkerError, match=r"item 7 \(7\): ValueError: seven is not allowed"):
        ex.map(fail_on_seven, range(20))
    with pytest.raises(WorkerError, match="setup failed: RuntimeError: no model here"):
        ex.map(with_token, [1, 2], setup=broken_setup)
    assert ex.map(describe, []) == []


def test_local_executor():
    check_executor(LocalExecutor(), 1)
    out = LocalExecutor().map(with_token, range(5), setup=worker_token)
    assert {pid for _, pid, _ in out} == {os.getpid()}
    with pytest.raises(WorkerError) as e:
        LocalExecutor().map(fail_on_seven, [7])
    assert isinstance(e.value.__cause__, ValueError)                         # the original error stays attached


def test_process_executor():
    check_executor(ProcessExecutor(2), 2)
    out = ProcessExecutor(2).map(with_token, range(6), setup=worker_token)
    assert os.getpid() not in {pid for _, pid, _ in out}
    big = list(range(20_000))
    assert ProcessExecutor(2).map(abs, big) == big                            # many items, chunked, in order


@pytest.mark.slow
def test_ray_executor(ray_executor):
    check_executor(ray_executor, 2)
    assert ray_executor.map(lambda x: -x, range(3)) == [0, -1, -2]            # Ray ships functions by value


def test_get_executor_names_and_bad_values():
    assert isinstance(get_executor("local"), LocalExecutor)
    assert get_executor("process", 2).workers == 2 and get_executor("process", 0).workers == os.cpu_count()
    for name in ("spark", "", None, "Local"):
        with pytest.raises(ValueError, match="executor must be one of local, process, ray"):
            get_executor(name)
    for workers in (-1, 1.5, "2", True, None):
        with pytest.raises(ValueError, match="workers must be an int >= 0"):
            get_executor("process", workers)


def test_ray_missing_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)                            # import ray -> ImportError
    with pytest.raises(ImportError, match=r"pip install 'llmops-nb\[ray\]'"):
        get_executor("ray", 2)
