"""The shared test fixtures give each test a real, private database and Redis."""

import asyncpg


async def test_each_test_gets_an_empty_database(database_url: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        tables = await conn.fetchval(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'"
        )
        assert tables == 0
    finally:
        await conn.close()


async def test_redis_answers(redis_client, redis_prefix: str) -> None:
    await redis_client.set(f"{redis_prefix}k", "v")
    assert await redis_client.get(f"{redis_prefix}k") == b"v"
