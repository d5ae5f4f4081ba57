"""core.sync._Turns: the cursor a write of a stream's pages commits with when two lanes write
them at once (a crash resumes after the last page every earlier page committed with)."""

from core.records import Page
from core.sync import _Turns


def pages(*cursors: int | None) -> list[Page]:
    return [Page(records=[], cursor=None if c is None else {"n": c}) for c in cursors]


def test_in_order_each_write_commits_its_newest_cursor():
    turns = _Turns()
    for n in range(3):
        turn = turns.add(pages(None, n))  # a page without a cursor first: the newest is taken
        assert turns.cursor(turn) == {"n": n}
        turns.committed(turn, True)
    assert turns.unwritten() is None


def test_a_write_ahead_of_an_uncommitted_one_writes_no_cursor_the_earlier_writes_both():
    turns = _Turns()
    first, second, third = turns.add(pages(0)), turns.add(pages(1)), turns.add(pages(2))
    assert turns.cursor(second) is None  # the first has not committed
    turns.committed(second, False)
    assert turns.cursor(first) == {"n": 1}  # its own pages and the second's are committed
    turns.committed(first, True)
    assert turns.cursor(third) == {"n": 2}
    turns.committed(third, True)
    assert turns.unwritten() is None


def test_the_newest_cursor_no_commit_wrote_is_left_for_the_end():
    # both looked before either committed: the first writes its own, the second none
    turns = _Turns()
    first, second = turns.add(pages(0)), turns.add(pages(1))
    assert (turns.cursor(first), turns.cursor(second)) == ({"n": 0}, None)
    turns.committed(second, False)
    turns.committed(first, True)
    assert turns.unwritten() == {"n": 1}


def test_writes_without_cursors_leave_the_last_cursor():
    turns = _Turns()
    first, second = turns.add(pages(0)), turns.add(pages(None))
    assert turns.cursor(first) == {"n": 0}
    turns.committed(first, True)
    assert turns.cursor(second) is None  # its pages have none: it writes none
    turns.committed(second, False)
    assert turns.unwritten() is None
