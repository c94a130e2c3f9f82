"""One contract suite for every ObjectStore (memory, local directory, S3 on moto, GCS on fake-gcs-server,
Azure on Azurite), plus URI parsing and the cloud specifics."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from minio import Minio

from sirius.lakehouse._exceptions import ConfigurationError, ObjectNotFoundError, ObjectStoreError
from sirius.lakehouse._object_store import (
    InMemoryObjectStore,
    LocalObjectStore,
    ObjectStore,
    open_object_store,
)
from sirius.lakehouse._s3_store import S3Config, S3ObjectStore

BLOCK = "blobs/p1/s1/b1"


@pytest.fixture(params=["memory", "local", "s3", "gcs", "azure"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ObjectStore]:
    if request.param == "memory":
        made: ObjectStore = InMemoryObjectStore()
    elif request.param == "local":
        made = open_object_store((tmp_path / "lake").as_uri())
    else:
        made = open_object_store(request.getfixturevalue(f"{request.param}_env"))
    yield made
    asyncio.run(made.close())


def test_implements_protocol(store: ObjectStore) -> None:
    assert isinstance(store, ObjectStore)


def test_put_if_absent_is_create_only(store: ObjectStore) -> None:
    async def scenario() -> None:
        assert await store.put_if_absent(BLOCK, b"first") is True
        assert await store.put_if_absent(BLOCK, b"second, longer") is False
        assert await store.get(BLOCK) == b"first"
        assert await store.total_size() == len(b"first")

    asyncio.run(scenario())


def test_concurrent_puts_have_one_winner(store: ObjectStore) -> None:
    async def scenario() -> None:
        payloads = [f"writer-{i}".encode() * 1000 for i in range(8)]
        results = await asyncio.gather(*(store.put_if_absent(BLOCK, p) for p in payloads))
        assert sorted(results) == [False] * 7 + [True]
        assert await store.get(BLOCK) == payloads[results.index(True)]

    asyncio.run(scenario())


def test_get_exists_and_missing(store: ObjectStore) -> None:
    async def scenario() -> None:
        assert await store.exists(BLOCK) is False
        with pytest.raises(ObjectNotFoundError):
            await store.get(BLOCK)
        payload = bytes(range(256)) * 4096  # 1 MiB, every byte value
        assert await store.put_if_absent(BLOCK, payload)
        assert await store.exists(BLOCK) is True
        assert await store.get(BLOCK) == payload
        assert await store.put_if_absent("blobs/p1/s1/empty", b"")
        assert await store.get("blobs/p1/s1/empty") == b""
        # a directory-like prefix of a key is not an object
        assert await store.exists("blobs/p1") is False
        with pytest.raises(ObjectNotFoundError):
            await store.get("blobs/p1/s1")

    asyncio.run(scenario())


def test_list_keys_by_prefix(store: ObjectStore) -> None:
    keys = [
        "blobs/p1/s1/b1",
        "blobs/p1/s1/b2",
        "blobs/p1/s2/b1",
        "blobs/p2/s1/b1",
        "views/log_entries/global/x.parquet",
    ]

    async def scenario() -> None:
        for key in reversed(keys):
            assert await store.put_if_absent(key, key.encode())
        assert await store.list_keys("") == keys
        assert await store.list_keys("blobs/") == keys[:4]
        assert await store.list_keys("blobs/p1/") == keys[:3]
        assert await store.list_keys("blobs/p1/s1/") == keys[:2]
        assert await store.list_keys("blobs/p") == keys[:4]  # a plain string prefix, as in S3
        assert await store.list_keys("blobs/p1/s1/b1") == ["blobs/p1/s1/b1"]
        assert await store.list_keys("nothing/") == []
        assert await store.total_size("blobs/p1/") == sum(len(k) for k in keys[:3])

    asyncio.run(scenario())


def test_delete_and_total_size_shrinks(store: ObjectStore) -> None:
    async def scenario() -> None:
        for i in range(5):
            assert await store.put_if_absent(f"blobs/p/s/b{i}", b"x" * 100)
        assert await store.put_if_absent("views/v/i/part.parquet", b"y" * 10)
        assert await store.total_size() == 510
        await store.delete("blobs/p/s/b0")
        await store.delete("blobs/p/s/b0")  # missing is fine
        assert await store.exists("blobs/p/s/b0") is False
        assert await store.total_size() == 410
        await store.delete_many(["blobs/p/s/b1", "blobs/p/s/b2", "blobs/p/s/never-existed"])
        await store.delete_many([])
        assert await store.list_keys("blobs/") == ["blobs/p/s/b3", "blobs/p/s/b4"]
        assert await store.total_size("blobs/") == 200
        await store.delete_many(await store.list_keys("blobs/"))
        assert await store.total_size() == 10
        # a deleted key can be created again
        assert await store.put_if_absent("blobs/p/s/b0", b"again")
        assert await store.get("blobs/p/s/b0") == b"again"

    asyncio.run(scenario())


def test_probe(store: ObjectStore) -> None:
    asyncio.run(store.probe())


@pytest.mark.parametrize(
    "key",
    ["", "/abs", "a//b", "a/../b", "../escape", "a/./b", "trailing/", "back\\slash", "nul\x00", "a/.sirius-tmp-x"],
)
def test_malformed_keys_are_refused(store: ObjectStore, key: str) -> None:
    async def scenario() -> None:
        with pytest.raises(ObjectStoreError):
            await store.put_if_absent(key, b"x")
        with pytest.raises(ObjectStoreError):
            await store.get(key)

    asyncio.run(scenario())


def test_malformed_prefixes_are_refused(store: ObjectStore) -> None:
    async def scenario() -> None:
        for prefix in ("/blobs", "../", "blobs/../x", "a//b"):
            with pytest.raises(ObjectStoreError):
                await store.list_keys(prefix)

    asyncio.run(scenario())


# -- local directory specifics ----------------------------------------------------------------


def test_local_layout_and_cleanup(tmp_path: Path) -> None:
    root = tmp_path / "lake"
    store = LocalObjectStore(root)
    assert store.uri == root.as_uri()

    async def scenario() -> None:
        assert await store.put_if_absent(BLOCK, b"payload")
        assert await store.put_if_absent(BLOCK, b"other") is False
        assert (root / "blobs" / "p1" / "s1" / "b1").read_bytes() == b"payload"
        # no temporary file survives a write, won or lost
        assert [p.name for p in root.rglob("*") if p.is_file()] == ["b1"]
        await store.delete(BLOCK)
        # directories left empty are pruned, the root stays
        assert root.is_dir()
        assert list(root.iterdir()) == []

    asyncio.run(scenario())


def test_local_ignores_stray_temporary_files(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path)
    (tmp_path / "blobs").mkdir()
    (tmp_path / "blobs" / ".sirius-tmp-crashed").write_bytes(b"half")

    async def scenario() -> None:
        assert await store.list_keys("") == []
        assert await store.total_size() == 0

    asyncio.run(scenario())


def test_local_probe_fails_when_root_vanishes(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path / "lake")
    os.rmdir(tmp_path / "lake")
    with pytest.raises(ObjectStoreError):
        asyncio.run(store.probe())


def test_local_root_cannot_be_a_file(tmp_path: Path) -> None:
    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(ObjectStoreError):
        LocalObjectStore(tmp_path / "file")
    with pytest.raises(ConfigurationError):
        open_object_store((tmp_path / "file").as_uri())


# -- S3 specifics -----------------------------------------------------------------------------


def test_s3_keys_live_under_the_prefix(s3_env: str, s3_endpoint: str) -> None:
    bucket = s3_env.removeprefix("s3://").split("/")[0]
    lake = S3ObjectStore.from_uri(s3_env)
    other = S3ObjectStore.from_uri(f"s3://{bucket}/other/")
    assert lake.uri == s3_env
    assert other.uri == f"s3://{bucket}/other"

    async def scenario() -> None:
        assert await lake.put_if_absent(BLOCK, b"lake")
        assert await other.put_if_absent(BLOCK, b"other")
        assert await lake.get(BLOCK) == b"lake"
        assert await other.list_keys("") == [BLOCK]
        await lake.close()
        await other.close()

    asyncio.run(scenario())
    client = Minio(s3_endpoint.removeprefix("http://"), "testing", "testing", secure=False, region="us-east-1")
    names = sorted(o.object_name for o in client.list_objects(bucket, recursive=True))
    assert names == [f"lake/{BLOCK}", f"other/{BLOCK}"]
    # create-only really is server-side: the object written first was not replaced
    assert client.get_object(bucket, f"lake/{BLOCK}").read() == b"lake"


def test_s3_whole_bucket_store(s3_env: str) -> None:
    bucket = s3_env.removeprefix("s3://").split("/")[0]
    store = open_object_store(f"s3://{bucket}")
    assert store.uri == f"s3://{bucket}"

    async def scenario() -> None:
        assert await store.put_if_absent("k", b"v")
        assert await store.list_keys("") == ["k"]
        await store.close()

    asyncio.run(scenario())


def test_s3_probe_fails_on_missing_bucket(s3_env: str) -> None:
    store = open_object_store("s3://no-such-bucket-here/lake")
    with pytest.raises(ObjectStoreError, match="does not exist"):
        asyncio.run(store.probe())


def test_s3_unreachable_endpoint_is_an_object_store_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "k")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s")
    store = S3ObjectStore("bucket", "lake")
    with pytest.raises(ObjectStoreError):
        asyncio.run(store.get(BLOCK))


def test_s3_config_from_env() -> None:
    config = S3Config.from_env(
        {
            "AWS_ENDPOINT_URL": "http://minio:9000",
            "AWS_ACCESS_KEY_ID": "id",
            "AWS_SECRET_ACCESS_KEY": "very-secret",
            "AWS_REGION": "eu-west-3",
        }
    )
    assert config == S3Config("minio:9000", secure=False, region="eu-west-3", access_key="id", secret_key="very-secret")
    assert "very-secret" not in repr(config)
    assert S3Config.from_env({}) == S3Config("s3.amazonaws.com", secure=True, region="us-east-1")
    assert S3Config.from_env({"AWS_ENDPOINT_URL": "https://s3.example.com/"}).endpoint == "s3.example.com"


@pytest.mark.parametrize(
    "environ",
    [
        {"AWS_ENDPOINT_URL": "ftp://host"},
        {"AWS_ENDPOINT_URL": "http://host:9000/path"},
        {"AWS_ACCESS_KEY_ID": "only-the-id"},
    ],
)
def test_s3_config_rejects(environ: dict[str, str]) -> None:
    with pytest.raises(ConfigurationError):
        S3Config.from_env(environ)


# -- URI parsing ------------------------------------------------------------------------------


def test_open_file_uri(tmp_path: Path) -> None:
    store = open_object_store((tmp_path / "a b").as_uri())  # percent-encoded space
    assert isinstance(store, LocalObjectStore)
    assert store.root == tmp_path / "a b"
    assert (tmp_path / "a b").is_dir()
    assert isinstance(open_object_store(f"file://localhost{tmp_path}"), LocalObjectStore)


def test_open_s3_uri_makes_no_network_call(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:1")
    store = open_object_store("s3://bucket/some/prefix/")
    assert isinstance(store, S3ObjectStore)
    assert store.uri == "s3://bucket/some/prefix"


@pytest.mark.parametrize(
    "uri",
    [
        "",
        "/abs/path",
        "relative/path",
        "http://host/path",
        "memory://",
        "gs://",
        "gs://bucket/a/../b",
        "az://",
        "az://container/p?x=1",
        "file://relative/path",
        "file:relative",
        "file:///tmp/x?mode=1",
        "s3://",
        "s3:///prefix",
        "s3://bucket/a/../b",
        "s3://bucket/p#frag",
    ],
)
def test_bad_uris_are_configuration_errors(uri: str) -> None:
    with pytest.raises(ConfigurationError):
        open_object_store(uri)


def test_unsupported_scheme_names_the_accepted_forms() -> None:
    with pytest.raises(ConfigurationError) as caught:
        open_object_store("ftp://bucket/prefix")
    message = str(caught.value)
    for form in ("file:///path", "s3://bucket/prefix", "gs://bucket/prefix", "az://container/prefix"):
        assert form in message
    assert "Internal" not in message


def test_azure_needs_an_account_or_the_emulator(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("AZURE_"):
            monkeypatch.delenv(name)
    with pytest.raises(ConfigurationError, match="AZURE_STORAGE_ACCOUNT_NAME"):
        open_object_store("az://container/lake")


def test_gcs_emulator_address_is_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", "ftp://host:1")
    with pytest.raises(ConfigurationError, match="STORAGE_EMULATOR_HOST"):
        open_object_store("gs://bucket/lake")


# -- GCS and Azure specifics ------------------------------------------------------------------


def test_gcs_keys_live_under_the_prefix_and_create_only_is_server_side(gcs_env: str, gcs_endpoint: str) -> None:
    import json
    import urllib.request

    bucket = gcs_env.removeprefix("gs://").split("/")[0]
    lake = open_object_store(gcs_env)
    assert lake.uri == gcs_env

    async def scenario() -> None:
        assert await lake.put_if_absent(BLOCK, b"first")
        assert await lake.put_if_absent(BLOCK, b"second") is False
        await lake.close()

    asyncio.run(scenario())
    # Read back through the emulator's JSON API, not through the store under test.
    with urllib.request.urlopen(f"{gcs_endpoint}/storage/v1/b/{bucket}/o", timeout=10) as response:
        names = [item["name"] for item in json.load(response)["items"]]
    assert names == [f"lake/{BLOCK}"]
    media = f"{gcs_endpoint}/storage/v1/b/{bucket}/o/lake%2Fblobs%2Fp1%2Fs1%2Fb1?alt=media"
    with urllib.request.urlopen(media, timeout=10) as response:
        assert response.read() == b"first"


@pytest.mark.parametrize("kind", ["gcs", "azure"])
def test_probe_fails_on_missing_bucket(kind: str, request: pytest.FixtureRequest) -> None:
    scheme = {"gcs": "gs", "azure": "az"}[kind]
    request.getfixturevalue(f"{kind}_env")  # the emulator and its settings, with another bucket
    store = open_object_store(f"{scheme}://no-such-bucket-here/lake")
    # Azure (and real GCS) answer 404; fake-gcs-server answers 500 "no bucket named …".
    match = "does not exist" if kind == "azure" else "no-such-bucket-here"
    with pytest.raises(ObjectStoreError, match=match):
        asyncio.run(store.probe())


def test_gcs_config_from_env(tmp_path: Path) -> None:
    from sirius.lakehouse._gcs_store import GCSConfig

    service = tmp_path / "sa.json"
    service.write_text('{"type": "service_account", "client_email": "x", "private_key": "k"}')
    user = tmp_path / "adc.json"
    user.write_text('{"type": "authorized_user", "client_id": "c", "client_secret": "s", "refresh_token": "t"}')
    assert GCSConfig.from_env({}) == GCSConfig()
    assert GCSConfig.from_env({"STORAGE_EMULATOR_HOST": "127.0.0.1:4443"}).emulator_url == "http://127.0.0.1:4443"
    assert GCSConfig.from_env({"GOOGLE_APPLICATION_CREDENTIALS": str(service)}).service_account_path == str(service)
    by_user = GCSConfig.from_env({"GOOGLE_APPLICATION_CREDENTIALS": str(user)})
    assert (by_user.service_account_path, by_user.user_credentials_path) == (None, str(user))
    keyed = GCSConfig.from_env({"GOOGLE_SERVICE_ACCOUNT_KEY": '{"secret": 1}'})
    assert "secret" not in repr(keyed)
    with pytest.raises(ConfigurationError, match="GOOGLE_APPLICATION_CREDENTIALS"):
        GCSConfig.from_env({"GOOGLE_APPLICATION_CREDENTIALS": str(tmp_path / "missing.json")})


def test_azure_config_from_env() -> None:
    from sirius.lakehouse._azure_store import AzureConfig

    config = AzureConfig.from_env(
        {
            "AZURE_STORAGE_ACCOUNT_NAME": "acct",
            "AZURE_STORAGE_ACCOUNT_KEY": "very-secret",
            "AZURE_STORAGE_SAS_TOKEN": "?sv=1",
        }
    )
    assert (config.account, config.access_key, config.sas_token, config.use_emulator) == (
        "acct",
        "very-secret",
        "sv=1",
        False,
    )
    assert "very-secret" not in repr(config)
    assert AzureConfig.from_env({"AZURE_STORAGE_USE_EMULATOR": "true"}).use_emulator
