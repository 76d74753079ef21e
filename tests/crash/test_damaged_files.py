"""Recovery from log and snapshot files damaged by hand.

A torn or partial record at the very end of the log is what a crash leaves
behind: recovery cuts it with a warning and starts. Damage followed by
records of later batches is corruption: refuse to start (exit 1), name the
file and offset, and change nothing on disk.
"""
import os
import re

import pytest

import lkvcrash
from lkvcrash import Client, encode_record, encode_set, make_value, read_value

KEYS = 10


def write_keys_one_batch_each(start_server, data_dir, n=KEYS, last_key=None):
    """Writes n keys with sequential requests (each its own log batch), and
    optionally one more key last; SIGKILLs the server so the log stays."""
    model = {}
    srv = start_server(data_dir)
    with Client(srv.port) as c:
        for i in range(n):
            key, value = f"key{i}", make_value(f"key{i}", 100 + 37 * i)
            assert c.put(key, value)[0] == 200
            model[key] = value
        if last_key:
            assert c.put(last_key, make_value(last_key, 500))[0] == 200
    srv.kill9()
    segs = lkvcrash.segments(data_dir)
    assert len(segs) == 1, segs
    return model, segs[0]


def assert_all_present(srv, model, absent=()):
    with Client(srv.port) as c:
        for key, value in model.items():
            got = read_value(c, key)
            assert got == value, \
                f"{key}: got {None if got is None else len(got)} bytes\n{srv.tail()}"
        for key in absent:
            assert read_value(c, key) is None, f"{key} came back from a cut record"


def assert_writes_continue_after_cut(start_server, srv, data_dir, model):
    """The cut must leave a log that later writes extend cleanly: if the
    garbage stayed, the next recovery would find it followed by valid
    records and refuse to start."""
    with Client(srv.port) as c:
        assert c.put("after-cut", b"later")[0] == 200
    srv.kill9()
    srv = start_server(data_dir)
    assert_all_present(srv, dict(model, **{"after-cut": b"later"}))
    srv.kill9()


@pytest.mark.parametrize("nbytes", [1, 31, 32, 33, 100, 4096])
def test_garbage_after_log_end_is_cut_as_torn_tail(start_server, data_dir, rng, nbytes):
    model, seg = write_keys_one_batch_each(start_server, data_dir)
    _, end = lkvcrash.walk_segment(seg)
    # Recovery must treat bytes after the last record as a torn tail.
    lkvcrash.write_at(seg, end, lkvcrash.random_garbage(rng, nbytes))
    srv = start_server(data_dir)
    line = srv.wait_line("event=torn_tail", 5)
    assert line is not None, f"no torn_tail warning:\n{srv.tail()}"
    assert seg.name in line and f"offset={end}" in line, line
    assert_all_present(srv, model)
    assert_writes_continue_after_cut(start_server, srv, data_dir, model)


@pytest.mark.parametrize("cut", [1, 16, 31, 32, 33, 60])
def test_partial_next_record_after_log_end_is_cut(start_server, data_dir, cut):
    model, seg = write_keys_one_batch_each(start_server, data_dir)
    recs, end = lkvcrash.walk_segment(seg)
    # The first `cut` bytes of the record the crash was writing: cut it off,
    # and the key it carried never appears.
    rec = encode_record(recs[-1].index + 1, encode_set("ghost", make_value("ghost", 64)))
    assert cut < len(rec)
    lkvcrash.write_at(seg, end, rec[:cut])
    srv = start_server(data_dir)
    assert srv.wait_line("event=torn_tail", 5) is not None, srv.tail()
    assert_all_present(srv, model, absent=["ghost"])
    assert_writes_continue_after_cut(start_server, srv, data_dir, model)


@pytest.mark.parametrize("how", ["zeroed", "truncated"])
@pytest.mark.parametrize("keep", [0, 1, 8, 31, 32, 33, -1])
def test_last_record_cut_short_is_dropped_and_the_rest_kept(start_server, data_dir, how, keep):
    model, seg = write_keys_one_batch_each(start_server, data_dir, last_key="victim")
    recs, end = lkvcrash.walk_segment(seg)
    last = recs[-1]
    assert last.command()[1] == "victim"
    keep = keep if keep >= 0 else last.end - last.offset - 1
    # Only the first `keep` bytes of the last record reached the disk: the
    # rest reads as zeros (preallocated) or the file ends there.
    if how == "zeroed":
        lkvcrash.write_at(seg, last.offset + keep, bytes(last.end - last.offset - keep))
    else:
        lkvcrash.truncate(seg, last.offset + keep)
    srv = start_server(data_dir)
    if keep > 0:
        line = srv.wait_line("event=torn_tail", 5)
        assert line is not None, srv.tail()
        assert f"offset={last.offset}" in line, line
    assert_all_present(srv, model, absent=["victim"])
    assert_writes_continue_after_cut(start_server, srv, data_dir, model)


def fingerprint(data_dir):
    # LOCK holds the pid of whoever holds it: rewriting it is its job. A
    # snapshot temp file is what a killed checkpoint leaves; it never holds
    # state, and start-up clears it before it looks at anything else.
    return {k: v for k, v in lkvcrash.dir_fingerprint(data_dir).items()
            if k != "LOCK" and not k.endswith(".tmp")}


def assert_refuses_to_start(data_dir, name, offset=None):
    before = fingerprint(data_dir)
    code, err = lkvcrash.run_to_exit(data_dir)
    assert code == 1, f"exit code {code}, want 1; stderr:\n{err}"
    lines = [l for l in err.splitlines() if name in l and (offset is None or
                                                            re.search(rf"offset[ =]{offset}\b", l))]
    assert lines, f"no stderr line names {name}" + \
        (f" and offset {offset}" if offset is not None else "") + f":\n{err}"
    after = fingerprint(data_dir)
    assert after == before, f"refusing to start changed the directory: {before} -> {after}"


@pytest.mark.parametrize("where", ["payload", "crc", "len_low", "len_high", "index", "type"])
@pytest.mark.parametrize("victim", [1, 4])
def test_damaged_record_followed_by_later_batches_refuses_start(start_server, data_dir, where,
                                                                victim):
    _, seg = write_keys_one_batch_each(start_server, data_dir)
    recs, _ = lkvcrash.walk_segment(seg)
    # the node's own records (configuration, a term's no-op) come first
    rec = [r for r in recs if r.type == 1][victim]
    assert recs[-1].index - recs[-1].batch_pos > rec.index, "later records share its batch"
    field = {"payload": (lkvcrash.REC_HDR + rec.len // 2, 0x10), "crc": (1, 0x01),
             "len_low": (4, 0x01), "len_high": (7, 0x40), "index": (16, 0x01),
             "type": (8, 0x04)}[where]
    # Mid-log damage: recovery must stop, not cut the log there.
    lkvcrash.flip_byte(seg, rec.offset + field[0], field[1])
    assert_refuses_to_start(data_dir, seg.name, rec.offset)


@pytest.mark.parametrize("which", ["first", "last"])
def test_damaged_record_in_older_segment_refuses_start(start_server, data_dir, fault_ctl, which):
    # Checkpoints that always fail still rotate the log, so segments pile up
    # that no snapshot covers.
    fault_ctl.write_text("fsync EIO match=snap-\n")
    srv = start_server(data_dir, "--checkpoint-bytes", "4k", fault_ctl=fault_ctl)
    with Client(srv.port) as c:
        for i in range(40):
            assert c.put(f"key{i}", make_value(f"key{i}", 700))[0] == 200
            if len(lkvcrash.segments(data_dir)) >= 3:
                break
    srv.kill9()
    assert not lkvcrash.snapshots(data_dir)
    segs = lkvcrash.segments(data_dir)
    assert len(segs) >= 3, f"no rotation happened: {segs}\n{srv.tail()}"
    recs = [r for r in lkvcrash.walk_segment(segs[0])[0] if r.type == 1]
    rec = recs[0] if which == "first" else recs[-1]
    # Damage at the end of a segment that later segments follow is not a
    # torn tail: the crash cannot have hit there.
    lkvcrash.flip_byte(segs[0], rec.offset + lkvcrash.REC_HDR)
    assert_refuses_to_start(data_dir, segs[0].name, rec.offset)


@pytest.mark.parametrize("offset", [0, 20, 60, 64, 70, -1])
def test_damaged_newest_snapshot_refuses_start(start_server, data_dir, offset):
    srv = start_server(data_dir)
    with Client(srv.port) as c:
        for i in range(20):
            assert c.put(f"key{i}", make_value(f"key{i}", 300))[0] == 200
    assert srv.terminate() == 0
    snaps = lkvcrash.snapshots(data_dir)
    assert len(snaps) == 1
    size = snaps[0].stat().st_size
    # A damaged snapshot cannot be trusted and the log it replaced is gone:
    # recovery must stop rather than start with lost keys.
    lkvcrash.flip_byte(snaps[0], offset if offset >= 0 else size - 1, 0x08)
    assert_refuses_to_start(data_dir, snaps[0].name)


def test_truncated_newest_snapshot_refuses_start(start_server, data_dir):
    srv = start_server(data_dir)
    with Client(srv.port) as c:
        for i in range(20):
            assert c.put(f"key{i}", make_value(f"key{i}", 300))[0] == 200
    assert srv.terminate() == 0
    snap = lkvcrash.snapshots(data_dir)[0]
    lkvcrash.truncate(snap, snap.stat().st_size - 5)
    assert_refuses_to_start(data_dir, snap.name)


def log_end(data_dir):
    """Where the last segment's records end now (the node writes its
    configuration and each term's no-op before any client write)."""
    return lkvcrash.walk_segment(lkvcrash.segments(data_dir)[-1])[1]


def put_records_ending_short_of_block(start_server, data_dir, fault_ctl, gap):
    """Through the server: one record that ends `gap` bytes before the 8 KiB
    mark of its segment, a checkpoint that rotates the log (and fails, so the
    segment stays), then one record in the next segment. SIGKILL."""
    fault_ctl.write_text("fsync EIO match=snap-\n")
    srv = start_server(data_dir, "--checkpoint-bytes", "4k", fault_ctl=fault_ctl)
    # after what the node wrote at start: record header 32 + op 1 + klen 4
    # + key 1 + value
    a = make_value("a", 8192 - gap - log_end(data_dir) - 38)
    with Client(srv.port) as c:
        assert c.put("a", a)[0] == 200
        assert srv.wait_line("level=warn event=checkpoint_failed", 10) is not None, srv.tail()
        assert c.put("b", b"next segment")[0] == 200
    srv.kill9()
    segs = lkvcrash.segments(data_dir)
    assert len(segs) == 2, segs
    recs, end = lkvcrash.walk_segment(segs[0])
    assert [r.command()[1] for r in recs if r.type == 1] == ["a"] and end == 8192 - gap
    return {"a": a, "b": b"next segment"}, segs


@pytest.mark.parametrize("gap", [1, 8, 31, 32, 100])
def test_segment_ending_just_short_of_a_block_boundary_is_not_corruption(
        start_server, data_dir, fault_ctl, gap):
    # Records of a full, durable segment end `gap` bytes before a block
    # boundary; the rest of the file is preallocated, never written. That is
    # a clean end, not damage, whatever the gap.
    model, _ = put_records_ending_short_of_block(start_server, data_dir, fault_ctl, gap)
    srv = start_server(data_dir)
    assert_all_present(srv, model)


@pytest.mark.parametrize("gap", [1, 8, 31, 32, 100])
def test_clean_log_end_just_short_of_a_block_boundary_is_not_a_torn_tail(start_server, data_dir,
                                                                         gap):
    # The last segment ends cleanly `gap` bytes before a block boundary:
    # nothing is torn, so there is nothing to cut or warn about.
    srv = start_server(data_dir)
    a = make_value("a", 8192 - gap - log_end(data_dir) - 38)
    with Client(srv.port) as c:
        assert c.put("a", a)[0] == 200
    srv.kill9()
    seg = lkvcrash.segments(data_dir)[0]
    assert lkvcrash.walk_segment(seg)[1] == 8192 - gap
    srv = start_server(data_dir)
    assert_all_present(srv, {"a": a})
    torn = [l for l in srv.lines if "event=torn_" in l]
    assert not torn, f"a clean log end reported as torn: {torn}"


@pytest.mark.parametrize("shape", ["empty", "zeros", "torn_header"])
def test_half_created_last_segment_is_removed(start_server, data_dir, shape):
    model, seg = write_keys_one_batch_each(start_server, data_dir)
    recs, _ = lkvcrash.walk_segment(seg)
    # The crash hit while the next segment was being created: its header
    # never became durable, and it holds nothing. Recovery drops it.
    new = data_dir / f"log-{recs[-1].index + 1:020d}.seg"
    header = lkvcrash.SEG_MAGIC + bytes(24)
    with open(new, "wb") as f:
        if shape == "zeros":
            os.posix_fallocate(f.fileno(), 0, 64 << 20)
        elif shape == "torn_header":
            f.write(header[:10])
    srv = start_server(data_dir)
    assert_all_present(srv, model)
    assert_writes_continue_after_cut(start_server, srv, data_dir, model)


def test_missing_middle_segment_refuses_start(start_server, data_dir, fault_ctl):
    # Failing checkpoints rotate without dropping anything: several segments.
    fault_ctl.write_text("fsync EIO match=snap-\n")
    srv = start_server(data_dir, "--checkpoint-bytes", "4k", fault_ctl=fault_ctl)
    with Client(srv.port) as c:
        for i in range(60):
            assert c.put(f"key{i}", make_value(f"key{i}", 700))[0] == 200
            if len(lkvcrash.segments(data_dir)) >= 3:
                break
    srv.kill9()
    segs = lkvcrash.segments(data_dir)
    assert len(segs) >= 3, segs
    # Records between two segments are gone: no prefix of the log survives
    # past the gap, so recovery must not guess.
    segs[1].unlink()
    before = fingerprint(data_dir)
    code, err = lkvcrash.run_to_exit(data_dir)
    assert code == 1, f"exit code {code} with a segment missing:\n{err}"
    assert segs[2].name in err, err
    assert fingerprint(data_dir) == before


def test_damaged_meta_file_refuses_start(start_server, data_dir):
    srv = start_server(data_dir)
    with Client(srv.port) as c:
        assert c.put("k", b"v")[0] == 200
    srv.kill9()
    lkvcrash.flip_byte(data_dir / "meta", 20)
    assert_refuses_to_start(data_dir, "meta")


@pytest.mark.parametrize("offset", [3, 16, 29])
def test_damaged_header_of_last_segment_holding_records_refuses_start(start_server, data_dir,
                                                                     fault_ctl, offset):
    # Failing checkpoints rotate the log: the last segment holds one record,
    # written (and acknowledged) after its header was synced.
    fault_ctl.write_text("fsync EIO match=snap-\n")
    srv = start_server(data_dir, "--checkpoint-bytes", "4k", fault_ctl=fault_ctl)
    with Client(srv.port) as c:
        assert c.put("a", make_value("a", 5000))[0] == 200
        assert srv.wait_line("level=warn event=checkpoint_failed", 10) is not None, srv.tail()
        assert c.put("b", b"acknowledged, alone in the last segment")[0] == 200
    srv.kill9()
    segs = lkvcrash.segments(data_dir)
    assert len(segs) == 2 and len(lkvcrash.walk_segment(segs[1])[0]) == 1, segs
    # Not a segment whose creation a crash cut short: dropping it would
    # lose an acknowledged write.
    lkvcrash.flip_byte(segs[1], offset)
    assert_refuses_to_start(data_dir, segs[1].name, 0)
