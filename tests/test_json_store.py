import json
import multiprocessing
import os
import random
import signal
import subprocess
import sys
import threading
import time
from decimal import Decimal
from pathlib import Path

import pytest
from store_worker import PRICE, RESPONSE, manager

from budget_manager import BudgetManager, CorruptStoreError
from budget_manager.stores import JsonFileStore, default_path, store_from_url

WORKER = str(Path(__file__).with_name("store_worker.py"))


def spawn(*args: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, WORKER, *args], **kwargs)


def exact(n: int) -> float:
    return float(Decimal(str(PRICE)) * n)


# -- files ------------------------------------------------------------------------------------
def test_each_project_has_its_own_file_in_the_working_folder(tmp_path):
    a, b = BudgetManager("alpha"), BudgetManager("beta")
    a.create_budget(1, "u")
    assert not b.is_valid_user("u")
    assert a.store.path.name == "user_cost_alpha.json" and a.store.path.parent == tmp_path
    assert default_path("a/b") != default_path("a_b")  # names that sanitize alike stay apart


def test_path_option_and_store_urls(tmp_path):
    m = BudgetManager("p", path=tmp_path / "custom.json")
    m.create_budget(3, "u")
    m.save_data()
    assert json.loads((tmp_path / "custom.json").read_text())["u"]["total_budget"] == 3
    via_url = BudgetManager("p", store=f"json://{tmp_path / 'custom.json'}")
    assert via_url.get_total_budget("u") == 3
    with pytest.raises(ValueError, match="scheme"):
        store_from_url("nosuch://x", "p")


def test_everything_survives_a_restart(tmp_path):
    path = tmp_path / "b.json"
    m = manager(str(path))
    m.create_budget(10, "u", duration="monthly", created_at=1_700_000_000)
    for _ in range(3):
        m.update_cost(user="u", completion_obj=RESPONSE)
    # no save_data(): the journal alone must carry the updates
    again = BudgetManager("workers", path=path)
    assert again.get_current_cost("u") == exact(3)
    assert again.user_dict["u"] == m.user_dict["u"]


def test_an_update_appends_one_line_and_never_rewrites_the_big_file(tmp_path):
    path = tmp_path / "big.json"
    m = manager(str(path))
    store = m.store
    assert isinstance(store, JsonFileStore)
    for i in range(100_000):
        store.put(f"user{i}", store.get("user0") or _record())
    m.save_data()
    before = os.stat(path)
    journal = Path(str(path) + ".journal")
    for i in range(100):
        m.update_cost(user=f"user{i * 997}", completion_obj=RESPONSE)
    after = os.stat(path)
    assert (after.st_ino, after.st_size, after.st_mtime_ns) == (
        before.st_ino,
        before.st_size,
        before.st_mtime_ns,
    )
    header, *lines = journal.read_text().splitlines()  # the compaction's first line, then ours
    assert header.startswith('{"after": ')
    assert len(lines) == 100 and all(len(line) < 400 for line in lines)


def _record():
    from budget_manager.money import to_money
    from budget_manager.records import new_record

    return new_record(to_money(1), None, 0.0)


def test_the_main_file_catches_up_in_the_background(tmp_path):
    path = tmp_path / "bg.json"
    m = manager(str(path))
    m.create_budget(1, "u")
    m.update_cost(user="u", completion_obj=RESPONSE)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if path.exists() and json.loads(path.read_text()).get("u", {}).get("current_cost") == PRICE:
            break
        time.sleep(0.05)
    else:
        pytest.fail("the main file was not brought up to date")
    # The journal is kept (a compaction, not the background write, empties it) and replaying it
    # over the newer main file gives the same state.
    assert Path(str(path) + ".journal").stat().st_size > 0
    m.update_cost(user="u", completion_obj=RESPONSE)
    again = manager(str(path))
    assert again.get_current_cost("u") == pytest.approx(2 * PRICE)


def test_writers_follow_each_others_compactions(tmp_path):
    path = tmp_path / "shared.json"
    stores = [JsonFileStore(path, compact_bytes=2_000, flush_after=None) for _ in range(3)]
    managers = [BudgetManager("p", store=s) for s in stores]
    managers[0].create_budget(1_000, "u")
    expected = Decimal(0)
    for i in range(600):  # many compactions, by every writer, some missed twice in a row
        m = managers[(i * 7 // 3) % 3]
        with m.reserve("u", amount=0.25) as hold:
            hold.settle(cost=Decimal("0.01") * (i % 5 + 1))
        expected += Decimal("0.01") * (i % 5 + 1)
    for m in managers:
        assert Decimal(str(m.get_current_cost("u"))) == expected
        assert m.get_holds("u") == []
    fresh = BudgetManager("p", store=JsonFileStore(path))
    assert Decimal(str(fresh.get_current_cost("u"))) == expected
    assert fresh.get_remaining_budget("u") == pytest.approx(1_000 - float(expected))


def test_extra_keys_in_records_are_kept(tmp_path):
    path = tmp_path / "user_cost.json"
    path.write_text(json.dumps({"u": {"total_budget": 5, "team": "red", "tags": ["a"]}}))
    m = manager(str(path))
    m.update_cost(user="u", completion_obj=RESPONSE)
    m.save_data()
    saved = json.loads(path.read_text())["u"]
    assert saved["team"] == "red" and saved["tags"] == ["a"] and saved["current_cost"] == PRICE


# -- bad files --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "content",
    [
        "{not json",
        "[1, 2, 3]",
        '"text"',
        '{"u": "not a record"}',
        '{"u": {"current_cost": 1}}',
        '{"u": {"total_budget": -5}}',
        '{"u": {"total_budget": 1, "duration": "soon"}}',
    ],
)
def test_corrupt_or_foreign_files_are_refused_and_left_untouched(tmp_path, content):
    path = tmp_path / "b.json"
    path.write_text(content)
    with pytest.raises(CorruptStoreError, match=r"b\.json"):
        BudgetManager("p", path=path)
    assert path.read_text() == content
    assert not Path(str(path) + ".journal").exists()


def test_a_damaged_journal_entry_is_refused(tmp_path):
    path = tmp_path / "b.json"
    m = manager(str(path))
    m.create_budget(1, "u")
    m.update_cost(user="u", completion_obj=RESPONSE)
    journal = Path(str(path) + ".journal")
    lines = journal.read_bytes().splitlines(keepends=True)
    journal.write_bytes(lines[0][:10] + b"\n" + lines[1])
    with pytest.raises(CorruptStoreError, match="journal"):
        BudgetManager("p", path=path)


def test_a_half_written_last_entry_is_dropped(tmp_path):
    path = tmp_path / "b.json"
    m = manager(str(path))
    m.create_budget(1, "u")
    m.update_cost(user="u", completion_obj=RESPONSE)
    journal = Path(str(path) + ".journal")
    good = journal.read_bytes()
    with open(journal, "ab") as f:  # a writer killed in the middle of its line
        f.write(b'{"u": "u", "r": {"total_budget": 1, "current_co')
    again = manager(str(path))
    assert again.get_current_cost("u") == PRICE
    again.update_cost(user="u", completion_obj=RESPONSE)
    assert journal.read_bytes().startswith(good) and journal.read_bytes().count(b"\n") == 3
    assert manager(str(path)).get_current_cost("u") == exact(2)


# -- concurrency ------------------------------------------------------------------------------
def test_eight_processes_times_500_updates_lose_nothing(tmp_path):
    path = str(tmp_path / "shared.json")
    manager(path).create_budget(total_budget=100, user="u")
    workers = [spawn("update", path, "u", "500") for _ in range(8)]
    assert [w.wait(timeout=300) for w in workers] == [0] * 8
    m = manager(path)
    assert m.get_current_cost("u") == exact(4000) == 0.69
    assert m.get_model_cost("u") == {"worker-model": 0.69}


def test_processes_compacting_while_others_write_lose_nothing(tmp_path):
    path = str(tmp_path / "shared.json")
    JsonFileStore(path).close()
    store = JsonFileStore(path, compact_bytes=2000)  # compact every few updates
    m = BudgetManager("workers", store=store)
    m.create_budget(100, "u")
    code = (
        f"import sys; sys.path.insert(0, {str(Path(WORKER).parent)!r})\n"
        "from store_worker import manager, RESPONSE\n"
        "from budget_manager import BudgetManager\n"
        "from budget_manager.stores import JsonFileStore\n"
        f"manager({path!r})\n"
        f"m = BudgetManager('w', store=JsonFileStore({path!r}, compact_bytes=2000))\n"
        "for _ in range(300): m.update_cost(user='u', completion_obj=RESPONSE)\n"
    )
    workers = [subprocess.Popen([sys.executable, "-c", code]) for _ in range(4)]
    creators = [spawn("create", path, f"c{i}", "100") for i in range(2)]
    assert [w.wait(timeout=300) for w in workers + creators] == [0] * 6
    fresh = manager(path)
    assert fresh.get_current_cost("u") == exact(1200)
    assert len(fresh.get_users()) == 201
    assert all(fresh.get_current_cost(f"c1-{i}") == PRICE for i in range(100))


def test_threads_share_one_manager_safely(tmp_path):
    m = manager(str(tmp_path / "t.json"))
    m.create_budget(100, "u")

    def work():
        for _ in range(500):
            m.update_cost(user="u", completion_obj=RESPONSE)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert m.get_current_cost("u") == exact(4000)


def _forked_updates(m: BudgetManager, n: int) -> None:
    for _ in range(n):
        m.update_cost(user="u", completion_obj=RESPONSE)


def test_a_manager_inherited_across_fork_still_locks(tmp_path):
    m = manager(str(tmp_path / "f.json"))
    m.create_budget(100, "u")
    m.update_cost(user="u", completion_obj=RESPONSE)
    ctx = multiprocessing.get_context("fork")
    children = [ctx.Process(target=_forked_updates, args=(m, 300)) for _ in range(4)]
    for c in children:
        c.start()
    _forked_updates(m, 300)
    for c in children:
        c.join(timeout=300)
        assert c.exitcode == 0
    assert m.get_current_cost("u") == exact(1501)


# -- crashes ----------------------------------------------------------------------------------
def test_every_update_that_returned_survives_sigkill(tmp_path):
    path = str(tmp_path / "k.json")
    for round_ in range(5):
        user = f"u{round_}"
        manager(path).create_budget(100, user)
        worker = spawn("ack", path, user, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert worker.stdin is not None and worker.stdout is not None
        acked = 0
        for _ in range(random.randint(20, 300)):
            worker.stdin.write("go\n")
            worker.stdin.flush()
            acked = int(worker.stdout.readline())
        worker.stdin.write("go\n")  # one more, killed at once: it may or may not land
        worker.stdin.flush()
        time.sleep(random.uniform(0, 0.002))
        worker.send_signal(signal.SIGKILL)
        worker.wait()
        recorded = manager(path).get_current_cost(user) / PRICE
        assert round(recorded) in (acked, acked + 1)
        assert manager(path).get_current_cost(user) in (exact(acked), exact(acked + 1))


def test_readers_never_see_a_torn_file_while_writers_are_killed(tmp_path):
    path = tmp_path / "torn.json"
    m = manager(str(path))
    store = m.store
    for i in range(20_000):
        store.put(f"user{i}", _record())
    m.save_data()
    stop = threading.Event()
    failures: list[str] = []
    reads = [0]

    def reader():
        while not stop.is_set():
            try:
                data = json.loads(path.read_bytes())
                assert len(data) == 20_000
                reads[0] += 1
            except Exception as exc:  # a torn file
                failures.append(repr(exc))

    threads = [threading.Thread(target=reader) for _ in range(2)]
    for t in threads:
        t.start()
    try:
        for _ in range(6):
            worker = spawn("churn", str(path), stdout=subprocess.PIPE, text=True)
            assert worker.stdout is not None
            worker.stdout.readline()  # it is compacting by now
            time.sleep(random.uniform(0, 0.3))
            worker.send_signal(signal.SIGKILL)
            worker.wait()
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert failures == [] and reads[0] > 0
    survivor = manager(str(path))
    assert len(survivor.get_users()) == 20_000
    assert not list(tmp_path.glob("*.tmp"))  # leftovers of killed compactions are cleaned
