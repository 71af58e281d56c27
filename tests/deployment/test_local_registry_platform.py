"""The local registry on a platform without POSIX file locks (Windows has no ``fcntl``)."""

import sys

import pytest

from tunekit.components.common.errors import UserError
from tunekit.components.deployment import local_registry


def test_no_fcntl_is_one_clear_user_error(tmp_path, monkeypatch):
    registry = tmp_path / "registry.json"
    # A None entry in sys.modules makes `import fcntl` raise ImportError, as it does on Windows.
    monkeypatch.setitem(sys.modules, "fcntl", None)
    with pytest.raises(UserError) as raised:
        local_registry.register_model(str(registry), {"model_dir": "m1"}, purpose="p")
    message = str(raised.value)
    assert "\n" not in message
    assert message.startswith(str(registry)) and "fcntl" in message and "WSL" in message
    assert not registry.exists()
