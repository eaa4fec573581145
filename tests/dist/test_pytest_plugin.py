"""pygents_dist.pytest_plugin: markers by fixture, soak deselection, fixtures, worker cleanup."""

import os
import textwrap
from pathlib import Path

import pytest

from tests.dist.test_testing import FAKE_MAIN, assert_no_process

pytest_plugins = ["pytester"]


@pytest.fixture(autouse=True)
def fake_redis_url(monkeypatch: pytest.MonkeyPatch) -> str:
    """The inner sessions' `redis_server` is this URL, so none starts a server."""
    url = "redis://127.0.0.1:1/0"
    monkeypatch.setenv("REDIS_URL", url)
    return url


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    """Run pytest in process, without plugins the inner tests do not need (hypothesis would
    be imported afresh by every run)."""
    return pytester.runpytest("-p", "no:hypothesispytest", "-p", "no:asyncio", *args)


MARKED = """
    def test_offline(key_prefix): pass
    def test_url(redis_url): pass
    def test_server(redis_server): pass
    def test_private(private_redis): pass
    def test_workers(worker_factory): pass
    def test_container(container_redis): pass
"""


def selected(pytester: pytest.Pytester, *args: str) -> list[str]:
    result = run(pytester, "--collect-only", "-q", "--strict-markers", *args)
    return sorted(line.split("::")[1] for line in result.outlines if "::" in line)


def test_fixtures_mark_tests_integration_and_slow(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(MARKED)
    assert selected(pytester, "-m", "not integration") == ["test_offline"]
    assert selected(pytester, "-m", "slow") == ["test_private", "test_workers"]
    assert selected(pytester, "-m", "integration and not slow and not containers") == [
        "test_server",
        "test_url",
    ]
    assert selected(pytester, "-m", "containers") == ["test_container"]
    assert "test_container" not in selected(pytester, "-m", "not containers")


def test_soak_tests_are_deselected_unless_soak(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest

        def test_quick(): pass

        @pytest.mark.soak
        def test_long(): pass
        """
    )
    run(pytester, "--strict-markers").assert_outcomes(passed=1, deselected=1)
    run(pytester, "--strict-markers", "--soak").assert_outcomes(passed=2)


def test_redis_url_is_the_session_url_with_a_fresh_prefix(
    pytester: pytest.Pytester, fake_redis_url: str
) -> None:
    pytester.makepyfile(
        f"""
        import os

        seen = set()

        def test_a(redis_url, key_prefix, redis_server):
            assert redis_url == redis_server.url == {fake_redis_url!r}
            assert os.environ["PYGENTS_KEY_PREFIX"] == key_prefix
            assert key_prefix.startswith("t") and len(key_prefix) == 9
            seen.add(key_prefix)

        test_b = test_a

        def test_c():
            assert len(seen) == 2
            assert "PYGENTS_KEY_PREFIX" not in os.environ
        """
    )
    run(pytester).assert_outcomes(passed=3)


@pytest.mark.integration
@pytest.mark.slow
def test_private_redis_takes_options_by_indirect_parametrization(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.parametrize("private_redis", [{"appendonly": True}], indirect=True)
        def test_aof(private_redis):
            assert private_redis.is_running() and private_redis.appendonly
            assert "appendonly yes" in (private_redis.directory / "redis.conf").read_text()

        @pytest.mark.parametrize("private_redis", [{"aof": True}], indirect=True)
        def test_bad(private_redis):
            pass
        """
    )
    result = run(pytester)
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*unknown RedisServer options*aof*"])


@pytest.mark.integration
@pytest.mark.slow
def test_worker_factory_stops_workers_even_when_the_test_fails(
    pytester: pytest.Pytester, tmp_path: Path, fake_redis_url: str
) -> None:
    fake = pytester.path / "pygents_dist"
    fake.mkdir()
    (fake / "__init__.py").write_text("")
    (fake / "__main__.py").write_text(FAKE_MAIN)
    (tmp_path / "myagents.py").write_text("")
    pid_file = tmp_path / "pids"
    pytester.makepyfile(
        test_inner=textwrap.dedent(
            f"""
            def test_fails(worker_factory, key_prefix):
                a = worker_factory("myagents", pythonpath=[{str(tmp_path)!r}])
                b = worker_factory("myagents", redis_url="redis://other",
                                   pythonpath=[{str(tmp_path)!r}])
                with open({str(pid_file)!r}, "w") as f:
                    print(a.pid, b.pid, file=f)
                assert a.output[0].endswith("--redis-url {fake_redis_url}")
                assert b.output[0].endswith("--redis-url redis://other")
                assert False, "deliberate"
            """
        )
    )
    result = run(pytester)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*deliberate*", "*WorkerProcess('myagents'*", "READY w-*", "TERM"])
    for pid in pid_file.read_text().split():
        assert_no_process(int(pid))
    assert os.environ.get("PYGENTS_KEY_PREFIX") is None


# -- where Redis comes from, said once ------------------------------------------------------

CONTAINER_TIER = """
    def test_one(container_redis): pass
    def test_two(container_redis): pass
"""


@pytest.fixture
def no_docker(monkeypatch: pytest.MonkeyPatch) -> None:
    """No Docker daemon answers (a socket that does not exist); not in CI; the default image."""
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.delenv("PYGENTS_REDIS_IMAGE", raising=False)


def summary_lines(result: pytest.RunResult) -> list[str]:
    return [line for line in result.outlines if line.startswith("pygents_dist: ")]


@pytest.mark.usefixtures("no_docker")
def test_without_docker_the_container_tier_is_skipped_and_said_once(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(CONTAINER_TIER)
    result = run(pytester, "--redis-image", "mine/redis:9")
    result.assert_outcomes(skipped=2)
    [line] = summary_lines(result)
    assert line.startswith("pygents_dist: container tier: no Redis container of mine/redis:9: ")
    assert "no Docker daemon answers" in line and line.endswith("(skipped)")


@pytest.mark.usefixtures("no_docker")
def test_in_ci_the_container_tier_fails_instead(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CI", "true")
    pytester.makepyfile(CONTAINER_TIER)
    result = run(pytester)
    result.assert_outcomes(errors=2)
    [line] = summary_lines(result)
    assert "redis:7-alpine" in line and line.endswith("(CI: failed, not skipped)")


@pytest.mark.usefixtures("no_docker")
def test_with_no_redis_at_all_the_tests_fail_with_one_line_saying_what_to_install(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("REDIS_URL")
    monkeypatch.setenv("PATH", str(tmp_path))  # no redis-server
    pytester.makepyfile("def test_a(redis_url): pass\ndef test_b(redis_url): pass\n")
    result = run(pytester)
    result.assert_outcomes(errors=2)
    [line] = summary_lines(result)
    assert line == (
        "pygents_dist: no Redis: REDIS_URL is not set, redis-server is not on PATH and no "
        "Docker daemon answers; install redis-server (apt-get install redis-server, brew "
        "install redis) or Docker, or set REDIS_URL"
    )
    assert "Traceback" not in result.stdout.str()


def test_the_session_redis_is_named_once(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_a(redis_url): pass\ndef test_b(redis_url): pass\n")
    result = run(pytester)
    result.assert_outcomes(passed=2)
    assert summary_lines(result) == ["pygents_dist: Redis for the tests: REDIS_URL"]
