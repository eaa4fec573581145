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
"""


def selected(pytester: pytest.Pytester, *args: str) -> list[str]:
    result = run(pytester, "--collect-only", "-q", "--strict-markers", *args)
    return sorted(line.split("::")[1] for line in result.outlines if "::" in line)


def test_fixtures_mark_tests_integration_and_slow(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(MARKED)
    assert selected(pytester, "-m", "not integration") == ["test_offline"]
    assert selected(pytester, "-m", "slow") == ["test_private", "test_workers"]
    assert selected(pytester, "-m", "integration and not slow") == ["test_server", "test_url"]


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
