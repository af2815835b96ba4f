"""Fixtures for Kindling's end-to-end tests (see kindling_harness.py for the machinery).

A module gets one kindlingd (`daemon`), started on a free 127.0.0.1 port with a fresh data dir and
stopped at the end of the module with SIGTERM; the teardown fails the module's last test if the
daemon did not exit 0 or left sandbox processes or cgroups behind.
"""

import os
import sys
from collections import namedtuple

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import kindling_harness as h  # noqa: E402

Package = namedtuple("Package", "family runtime handler v1 v2")


def pytest_collection_modifyitems(config, items):
    if os.path.exists(h.KINDLINGD) and os.geteuid() == 0:
        return
    why = "kindlingd not built (%s)" % h.KINDLINGD if os.geteuid() == 0 else "e2e tests need root"
    for item in items:
        if "/e2e/" in str(item.fspath):
            item.add_marker(pytest.mark.skip(reason=why))


@pytest.fixture(scope="session")
def build_dir():
    d = h.make_private_tmpdir("kindling-e2e-build-")
    yield d
    import shutil
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="session")
def packages(build_dir):
    """The three runtime families, each with two code versions (v1, v2) that report their tag."""
    return {
        "python": Package("python", "python3.12", "app.handler", h.python_zip("py-v1"), h.python_zip("py-v2")),
        "node": Package("node", "nodejs20.x", "index.handler", h.node_zip("node-v1"), h.node_zip("node-v2")),
        "provided": Package("provided", "provided.al2023", "bootstrap",
                            h.make_zip({"bootstrap": h.compile_bootstrap(build_dir, "c-v1")}),
                            h.make_zip({"bootstrap": h.compile_bootstrap(build_dir, "c-v2")})),
    }


def _daemon(**kwargs):
    d = h.Daemon(**kwargs)
    try:
        d.start()
    except BaseException:
        d.cleanup()
        raise
    return d


@pytest.fixture(scope="module")
def daemon():
    d = _daemon(idle_timeout=120)
    try:
        yield d
        d.stop(check=True)
    finally:
        d.cleanup()


@pytest.fixture(scope="module")
def client(daemon):
    return h.boto_client(daemon.endpoint)


@pytest.fixture
def new_daemon():
    """Factory for extra daemons inside one test; all are stopped (checked) and removed after."""
    made = []

    def make(**kwargs):
        d = _daemon(**kwargs)
        made.append(d)
        return d

    yield make
    errors = []
    for d in made:
        try:
            d.stop(check=True)
        except AssertionError as e:
            errors.append(str(e))
        finally:
            d.cleanup()
    assert not errors, errors
