"""Races of the native tracer's shutdown, made certain by test points and caught by AddressSanitizer.

c/shutdown_race.c is built with the tracer core, ``-DSIRIUS_TEST_HOOKS`` (the core then calls
the program's ``sr_test_hook`` where a race window opens, and the program holds it open) and
``-fsanitize=address``. Each race was a crash of Sirius's self-telemetry before its fix: shutdown
walking the thread registry while the sink freed exited threads' structs, and a thread published
into the next session's registry after a shutdown and an init ran during its name hook.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from c_programs import NATIVE, PROGRAMS

SANITIZER = ["-fsanitize=address", "-fno-omit-frame-pointer"]


def _compiles_with_asan(out: Path) -> bool:
    probe = out / "probe.c"
    probe.write_text("int main(void) { return 0; }\n")
    result = subprocess.run(["cc", *SANITIZER, str(probe), "-o", str(out / "probe")], capture_output=True, check=False)
    return result.returncode == 0


@pytest.fixture(scope="module")
def program(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("racebuild")
    if not _compiles_with_asan(out):
        pytest.skip("cc cannot build with AddressSanitizer")
    exe = out / "shutdown_race"
    core = NATIVE / "core"
    subprocess.run(
        [
            "cc",
            "-O1",
            "-g",
            *SANITIZER,
            "-DSIRIUS_TEST_HOOKS",
            "-std=gnu11",
            "-pthread",
            "-Wall",
            "-Wextra",
            "-Werror",
            f"-I{NATIVE / 'include'}",
            f"-I{core}",
            f"-I{PROGRAMS}",
            *map(str, sorted(core.glob("*.c"))),
            str(PROGRAMS / "shutdown_race.c"),
            "-o",
            str(exe),
        ],
        check=True,
    )
    return exe


def _run(program: Path, tmp_path: Path, *args: object) -> dict[str, int]:
    try:
        result = subprocess.run(
            [str(program), str(tmp_path / "items.bin"), *map(str, args)],
            capture_output=True,
            text=True,
            timeout=120,
            env={"ASAN_OPTIONS": "halt_on_error=1:detect_leaks=0"},
            check=False,
        )
    except subprocess.TimeoutExpired as error:
        pytest.fail(f"shutdown_race {' '.join(map(str, args))} hung (the sink looping on its registry?): {error}")
    assert result.returncode == 0, result.stderr[-4000:]
    words = result.stdout.split()
    return {words[i]: int(words[i + 1]) for i in range(0, len(words), 2)}


def test_shutdown_walk_excludes_sink_passes_that_free_exited_threads(program: Path, tmp_path: Path) -> None:
    # At shutdown's first step the workers exit and the program waits for sink passes: before
    # the fix one freed their structs and the walk wrote into them (heap-use-after-free).
    report = _run(program, tmp_path, "walk", 4, 16)
    assert report["sessions"] == 4
    assert report["passes_during_walk"] == 0


def test_thread_attached_across_a_restart_is_not_published_into_the_next_session(program: Path, tmp_path: Path) -> None:
    # The worker's name hook waits while the tracer restarts: before the fix its stale struct
    # entered the new registry and was reset there (the sink then read freed structs or looped).
    report = _run(program, tmp_path, "attach", 3)
    assert report["sessions"] == 3
    assert report["threads_attached"] == 3  # the worker, once per restarted session
