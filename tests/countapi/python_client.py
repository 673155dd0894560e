"""Runs PyPI's countapi 1.0, unchanged, against a hitcounter.

Usage: python python_client.py BASE_URL. The library hard-codes
https://api.countapi.xyz in each module's API_BASE: patching those module
attributes after import is the one change, and every request is checked
to go to BASE_URL before it is sent. Exits non-zero on the first failure.
"""

import importlib
import sys
from importlib.metadata import version

import requests

base = sys.argv[1].rstrip("/")
assert version("countapi") == "1.0", version("countapi")

for name in ("common", "create", "info", "set", "value", "stats"):
    importlib.import_module(f"countapi.{name}").API_BASE = base

# Nothing may leave for countapi.xyz if a module kept its own base.
_send = requests.Session.send


def _only_base(session, prepared, **kwargs):
    assert prepared.url.startswith(base + "/"), f"refusing {prepared.url}"
    return _send(session, prepared, **kwargs)


requests.Session.send = _only_base

import countapi  # noqa: E402
from countapi.common import NotOKError  # noqa: E402

ns = "py.client"
created = countapi.create_counter(
    key="visits",
    namespace=ns,
    value=5,
    enable_reset=True,
    update_lower_bound=-1,
    update_upper_bound=2,
)
assert (created.namespace, created.key, created.value) == (ns, "visits", 5), vars(created)

assert countapi.hit_counter("visits", ns).value == 6
assert countapi.get_value("visits", ns).value == 6
assert countapi.update_counter(2, "visits", ns).value == 8
assert countapi.update_counter(-1, "visits", ns).value == 7

# enable_reset=True: set needs no key, as in CountAPI.
done = countapi.set_value(42, "visits", ns)
assert (done.old_value, done.value) == (7, 42), vars(done)

info = countapi.get_info("visits", ns)
assert info.ttl == -1, info.ttl
assert info.value == 42 and info.enable_reset is True
assert (info.update_lower_bound, info.update_upper_bound) == (-1, 2)
assert info.created_at.year >= 2024, info.created_at

# The default namespace, and a counter made by a first hit.
assert countapi.hit_counter("py-default").value == 1
for call, status in (
    (lambda: countapi.set_value(0, "py-default"), 403),
    (lambda: countapi.update_counter(-1, "py-default"), 403),
    (lambda: countapi.get_value("py-missing"), 404),
    (lambda: countapi.create_counter(key="visits", namespace=ns), 409),
):
    try:
        call()
    except NotOKError as error:
        assert f"[status {status}]" in str(error), error
    else:
        raise AssertionError(f"expected {status}")

stats = countapi.get_stats()
assert stats.keys_created == 2, vars(stats)
assert stats.requests > 0 and isinstance(stats.version, str), vars(stats)

print("python countapi 1.0: ok")
