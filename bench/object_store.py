"""Object-store client throughput: our former ``minio`` S3 store vs the ``obstore`` one, on moto.

Both stores talk to the same ThreadedMotoServer on loopback, one bucket each. The baseline,
``MinioStore``, makes exactly the calls the ``minio``-based ``S3ObjectStore`` made (one
conditional ``PUT`` with ``If-None-Match: *``, ``get_object``, ``stat_object``, ``list_objects``,
``remove_objects`` in batches), each in a worker thread as it did. The candidate is
``sirius.lakehouse``'s ``S3ObjectStore`` on ``obstore``. For 16 KiB and 1 MiB objects, 8
concurrent tasks put, get, head, list and delete; figures are operations per second, and the
ratio is obstore / minio (above 1: obstore is faster). Then create-only semantics (8 concurrent
create-only puts of one key, repeated: exactly one winner each round) and error behaviour.

    .venv/bin/python bench/object_store.py [--rounds 3]

moto is a Python server: absolute figures are bounded by it; the ratio is what this measures.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import statistics
import time
import uuid

import certifi
import urllib3
from minio import Minio
from minio.deleteobjects import DeleteObject
from minio.error import S3Error
from moto.server import ThreadedMotoServer

from sirius.lakehouse import ObjectNotFoundError, ObjectStoreError, open_object_store

SIZES = {"16 KiB": (16 * 1024, 400), "1 MiB": (1024 * 1024, 48)}
CONCURRENCY = 8


class MinioStore:
    """The calls of the former minio-based S3 store (put create-only, get, exists, list, delete_many)."""

    def __init__(self, endpoint: str, bucket: str, prefix: str) -> None:
        self._http = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=10.0, read=60.0),
            maxsize=16,
            cert_reqs="CERT_REQUIRED",
            ca_certs=os.environ.get("SSL_CERT_FILE") or certifi.where(),
            retries=urllib3.Retry(total=3, backoff_factor=0.2, status_forcelist=[500, 502, 503, 504]),
        )
        self._client = Minio(endpoint, "testing", "testing", secure=False, region="us-east-1", http_client=self._http)
        self._bucket = bucket
        self._prefix = f"{prefix}/"

    def _put(self, name: str, data: bytes) -> bool:
        headers = {"Content-Type": "application/octet-stream", "If-None-Match": "*"}
        for _ in range(3):
            try:
                self._client._put_object(self._bucket, name, data, headers)
            except S3Error as exc:
                if exc.code == "PreconditionFailed":
                    return False
                if exc.code == "ConditionalRequestConflict":
                    continue
                raise
            return True
        raise ObjectStoreError("conditional write kept conflicting")

    async def put_if_absent(self, key: str, data: bytes) -> bool:
        return await asyncio.to_thread(self._put, self._prefix + key, data)

    def _get(self, name: str) -> bytes:
        try:
            response = self._client.get_object(self._bucket, name)
        except S3Error as exc:
            if exc.code == "NoSuchKey":
                raise ObjectNotFoundError(name) from exc
            raise ObjectStoreError(str(exc)) from exc
        try:
            return response.read()
        finally:
            response.close()
            response.release_conn()

    async def get(self, key: str) -> bytes:
        return await asyncio.to_thread(self._get, self._prefix + key)

    def _exists(self, name: str) -> bool:
        try:
            self._client.stat_object(self._bucket, name)
        except S3Error as exc:
            if exc.code in ("NoSuchKey", "NoSuchObject", "ResourceNotFound"):
                return False
            raise
        return True

    async def exists(self, key: str) -> bool:
        return await asyncio.to_thread(self._exists, self._prefix + key)

    def _list(self, prefix: str) -> list[str]:
        objects = self._client.list_objects(self._bucket, prefix=self._prefix + prefix, recursive=True)
        return sorted(o.object_name[len(self._prefix) :] for o in objects if o.object_name)

    async def list_keys(self, prefix: str) -> list[str]:
        return await asyncio.to_thread(self._list, prefix)

    def _delete_many(self, names: list[str]) -> None:
        errors = list(self._client.remove_objects(self._bucket, (DeleteObject(n) for n in names)))
        if errors:
            raise ObjectStoreError(f"{len(errors)} deletes failed")

    async def delete_many(self, keys: list[str]) -> None:
        await asyncio.to_thread(self._delete_many, [self._prefix + k for k in keys])

    async def close(self) -> None:
        self._http.clear()


async def _bounded(calls: list, limit: int = CONCURRENCY) -> list:
    gate = asyncio.Semaphore(limit)

    async def one(call):
        async with gate:
            return await call()

    return await asyncio.gather(*(one(c) for c in calls))


async def _throughput(store, size: int, count: int) -> dict[str, float]:
    payload = os.urandom(size)
    keys = [f"blobs/p/s{i % 8}/b{i}" for i in range(count)]
    rates: dict[str, float] = {}

    async def timed(name: str, calls: list, operations: int) -> None:
        start = time.perf_counter()
        results = await _bounded(calls)
        rates[name] = operations / (time.perf_counter() - start)
        if name == "put":
            assert all(results), "a put lost on a fresh key"
        if name == "get":
            assert all(len(r) == size for r in results)

    await timed("put", [lambda k=k: store.put_if_absent(k, payload) for k in keys], count)
    await timed("get", [lambda k=k: store.get(k) for k in keys], count)
    await timed("head", [lambda k=k: store.exists(k) for k in keys], count)
    lists = 40
    await timed("list", [lambda: store.list_keys("blobs/p/")] * lists, lists)
    start = time.perf_counter()
    await store.delete_many(keys)  # one bulk request per 1000 keys on both
    rates["delete"] = count / (time.perf_counter() - start)
    assert await store.list_keys("blobs/") == []
    return rates


async def _create_race(store, rounds: int = 20) -> tuple[int, int]:
    """Rounds with exactly one winner among 8 concurrent create-only puts, and total rounds."""
    exact = 0
    for r in range(rounds):
        key = f"race/k{r}"
        results = await asyncio.gather(*(store.put_if_absent(key, f"w{i}".encode() * 100) for i in range(8)))
        winner = results.index(True) if results.count(True) == 1 else None
        if winner is not None and await store.get(key) == f"w{winner}".encode() * 100:
            exact += 1
    return exact, rounds


async def _errors(store) -> dict[str, str]:
    out = {}
    try:
        await store.get("missing/key")
        out["get missing"] = "no error"
    except ObjectNotFoundError:
        out["get missing"] = "ObjectNotFoundError"
    except Exception as exc:  # noqa: BLE001 - any other error is the figure
        out["get missing"] = type(exc).__name__
    out["exists missing"] = str(await store.exists("missing/key"))
    return out


async def _unreachable(make) -> str:
    store = make()
    start = time.perf_counter()
    try:
        await store.get("k/x")
        kind = "no error"
    except ObjectStoreError as exc:
        kind = type(exc).__name__
    except Exception as exc:  # noqa: BLE001 - the baseline raises raw transport errors
        kind = type(exc).__name__
    await store.close()
    return f"{kind} after {time.perf_counter() - start:.2f} s"


async def main(rounds: int) -> None:
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"{host}:{port}"
    os.environ.update(
        AWS_ENDPOINT_URL=f"http://{endpoint}",
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_REGION="us-east-1",
    )
    admin = Minio(endpoint, "testing", "testing", secure=False, region="us-east-1")
    try:
        stores = {}
        for name in ("minio", "obstore"):
            bucket = f"bench-{name}-{uuid.uuid4().hex[:8]}"
            admin.make_bucket(bucket)
            stores[name] = (
                MinioStore(endpoint, bucket, "lake") if name == "minio" else open_object_store(f"s3://{bucket}/lake")
            )
        print(f"moto on {endpoint}; {CONCURRENCY} concurrent tasks; median of {rounds} rounds; ops/s")
        print(f"{'size':>7} {'op':>7} {'minio':>9} {'obstore':>9} {'ratio':>6}")
        for label, (size, count) in SIZES.items():
            samples: dict[str, dict[str, list[float]]] = {n: {} for n in stores}
            for _ in range(rounds):
                for name, store in stores.items():
                    for op, rate in (await _throughput(store, size, count)).items():
                        samples[name].setdefault(op, []).append(rate)
            for op in ("put", "get", "head", "list", "delete"):
                m = statistics.median(samples["minio"][op])
                o = statistics.median(samples["obstore"][op])
                print(f"{label:>7} {op:>7} {m:9.0f} {o:9.0f} {o / m:5.2f}x")
        for name, store in stores.items():
            exact, total = await _create_race(store)
            print(f"{name}: create-only race, exactly one winner (and its bytes) in {exact}/{total} rounds")
            print(f"{name}: errors {await _errors(store)}")
        print("minio: unreachable endpoint:", await _unreachable(lambda: MinioStore("127.0.0.1:1", "bucket", "lake")))
        os.environ["AWS_ENDPOINT_URL"] = "http://127.0.0.1:1"
        print("obstore: unreachable endpoint:", await _unreachable(lambda: open_object_store("s3://bucket/lake")))
        for store in stores.values():
            await store.close()
    finally:
        server.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    asyncio.run(main(parser.parse_args().rounds))
