"""core.sync._ReadAhead: what a stream reads ahead of its writer stays within a number of
records and deletions, whatever the connector's page size; the reader waits for room."""

import asyncio
from datetime import UTC, datetime

from core.records import Deletion, Page
from core.sync import _ReadAhead


def page(n: int) -> Page:
    return Page(records=[object()] * n)  # type: ignore[list-item]  # only counted here


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_the_reader_waits_while_the_next_page_would_pass_the_limit() -> None:
    queue = _ReadAhead(10)
    put: list[int] = []

    async def reader() -> None:
        for n in (4, 4, 4, 3):
            await queue.put(page(n))
            put.append(n)
        await queue.put(None)

    task = asyncio.create_task(reader())
    await settle()
    assert put == [4, 4]  # a third page of 4 would make 12
    first = await queue.get()
    assert isinstance(first, Page) and len(first.records) == 4
    await settle()
    assert put == [4, 4, 4]  # 8 waiting: the page of 3 would make 11
    while not queue.empty():
        queue.get_nowait()
    await settle()
    assert put == [4, 4, 4, 3]
    assert isinstance(await queue.get(), Page)
    assert await queue.get() is None
    await task


async def test_a_page_larger_than_the_limit_goes_alone_and_the_end_follows_it() -> None:
    queue = _ReadAhead(10)

    async def reader() -> None:
        await queue.put(page(2))
        await queue.put(page(25))  # waits until nothing is waiting, then goes alone
        await queue.put(ValueError("the CRM failed"))

    task = asyncio.create_task(reader())
    await settle()
    small = queue.get_nowait()
    assert isinstance(small, Page) and len(small.records) == 2
    await settle()
    big = await queue.get()
    assert isinstance(big, Page) and len(big.records) == 25
    assert isinstance(await queue.get(), ValueError)
    await task


async def test_deletions_and_empty_pages_count_too() -> None:
    queue = _ReadAhead(3)
    gone = Deletion("deals", "1", datetime(2026, 1, 1, tzinfo=UTC))
    done: list[str] = []

    async def reader() -> None:
        await queue.put(Page(deletions=[gone, gone]))
        await queue.put(Page())  # counts as one
        done.append("two")
        await queue.put(Page(deletions=[gone]))
        done.append("three")

    task = asyncio.create_task(reader())
    await settle()
    assert done == ["two"]  # 2 + 1 waiting: one more would pass 3
    queue.get_nowait()
    await settle()
    assert done == ["two", "three"]
    await task
