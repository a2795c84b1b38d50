"""The settings-changed message, as settings-svc writes it and the model services read it."""

from __future__ import annotations

import pytest

from svc_common import settings_changes
from svc_common.settings_changes import SettingsChange


def test_a_change_reads_back_as_written() -> None:
    message = settings_changes.encode("alice", "multimodal")
    assert message == "alice:multimodal"
    assert settings_changes.decode(message) == SettingsChange("alice", "multimodal")
    assert settings_changes.decode(message.encode()) == SettingsChange("alice", "multimodal")


def test_a_user_id_may_contain_a_colon() -> None:
    message = settings_changes.encode("tenant:alice", "text")
    assert settings_changes.decode(message) == SettingsChange("tenant:alice", "text")


@pytest.mark.parametrize("message", ["alice:*", "alice:video", ":text", "text", ""])
def test_anything_else_is_not_a_change(message: str) -> None:
    # "<user>:*" included: nothing publishes it, so no subscriber acts on it.
    assert settings_changes.decode(message) is None
